//! The group calls the console's Keys page makes besides create/update/delete (spec §3.3):
//! config options, drag-and-drop reorder and copy, and the API's three languages (§3.1), against
//! the real binary.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{AUTH_KEY, Server};
use serde_json::{Value, json};

/// Bound on waiting for a background task; a failure, not a sleep.
const TASK_TIMEOUT: Duration = Duration::from_secs(30);

/// An admin call in a language (`Accept-Language`), as the console sends it.
async fn api_in(
    server: &Server,
    lang: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = server
        .client
        .request(method, server.url(path))
        .header("accept-language", lang);
    if !path.starts_with("/api/auth") {
        req = req.bearer_auth(AUTH_KEY);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.expect("admin request");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("admin body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[track_caller]
fn ok_data(got: (u16, Value)) -> Value {
    assert_eq!(got.0, 200, "{}", got.1);
    assert_eq!(got.1["code"], 0, "{}", got.1);
    got.1["data"].clone()
}

#[track_caller]
fn assert_error(got: &(u16, Value), status: u16, code: &str) {
    assert_eq!(
        (got.0, got.1["code"].as_str()),
        (status, Some(code)),
        "{}",
        got.1
    );
    assert!(
        got.1["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        got.1
    );
}

async fn group_names(server: &Server) -> Vec<String> {
    let data = ok_data(server.api("GET", "/api/groups", None).await);
    let groups = data.as_array().expect("groups");
    groups
        .iter()
        .map(|g| g["name"].as_str().unwrap().to_string())
        .collect()
}

async fn group_named(server: &Server, name: &str) -> Value {
    let data = ok_data(server.api("GET", "/api/groups", None).await);
    let groups = data.as_array().expect("groups");
    groups
        .iter()
        .find(|g| g["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no group {name} in {data}"))
}

const UPSTREAM: &str = "http://127.0.0.1:9";

// ---- config options -------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn config_options_are_the_overridable_settings_with_current_values() {
    let server = Server::start().await;
    let options =
        ok_data(api_in(&server, "en-US", "GET", "/api/groups/config-options", None).await);
    let options = options.as_array().expect("array");
    let keys: BTreeSet<&str> = options.iter().map(|o| o["key"].as_str().unwrap()).collect();
    let expected: BTreeSet<&str> = [
        "enable_request_body_logging",
        "request_timeout",
        "connect_timeout",
        "idle_conn_timeout",
        "response_header_timeout",
        "stream_idle_timeout",
        "max_idle_conns",
        "max_idle_conns_per_host",
        "proxy_url",
        "max_retries",
        "blacklist_threshold",
        "failover_status_codes",
        "key_validation_interval_minutes",
        "key_validation_concurrency",
        "key_validation_timeout_seconds",
    ]
    .into();
    assert_eq!(
        keys, expected,
        "app_url, proxy_keys and the log settings are system-only"
    );
    for option in options {
        let fields: BTreeSet<&str> = option
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            fields,
            ["default_value", "description", "key", "name"].into(),
            "{option}"
        );
        assert!(
            option["name"].as_str().is_some_and(|n| !n.is_empty()),
            "{option}"
        );
    }
    let option = |key: &str| options.iter().find(|o| o["key"] == key).unwrap().clone();
    // Typed, so the console picks a number input, a switch or a text field.
    assert_eq!(option("request_timeout")["default_value"], 600);
    assert_eq!(
        option("enable_request_body_logging")["default_value"],
        false
    );
    assert_eq!(option("proxy_url")["default_value"], "");
    assert_eq!(
        option("failover_status_codes")["default_value"],
        "400-403,405-999"
    );
    assert_eq!(option("max_retries")["name"], "Max Retries");

    // default_value is the current system value, not the built-in default.
    let changed = json!({"max_retries": 7, "enable_request_body_logging": true});
    ok_data(server.api("PUT", "/api/settings", Some(changed)).await);
    let options = ok_data(server.api("GET", "/api/groups/config-options", None).await);
    let now = |key: &str| {
        options
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["key"] == key)
            .unwrap()["default_value"]
            .clone()
    };
    assert_eq!(now("max_retries"), 7);
    assert_eq!(now("enable_request_body_logging"), true);
}

// ---- reorder ----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn reorder_refuses_what_v1_refuses_and_changes_nothing() {
    let server = Server::start().await;
    let a = server
        .create_group("a", "openai", UPSTREAM, json!({}))
        .await;
    let b = server
        .create_group("b", "openai", UPSTREAM, json!({}))
        .await;
    let before = ok_data(server.api("GET", "/api/groups", None).await);
    let cases = [
        ("no items", json!({"items": []})),
        ("no items field", json!({})),
        ("id 0", json!({"items": [{"id": 0, "sort": 1}]})),
        ("negative sort", json!({"items": [{"id": a, "sort": -1}]})),
        (
            "same id twice",
            json!({"items": [{"id": a, "sort": 1}, {"id": a, "sort": 2}]}),
        ),
        (
            "unknown id",
            json!({"items": [{"id": b, "sort": 50}, {"id": 9999, "sort": 1}]}),
        ),
    ];
    for (why, body) in cases {
        let got = server.api("PUT", "/api/groups/reorder", Some(body)).await;
        assert_eq!(got.0, 400, "{why}: {}", got.1);
        assert_eq!(got.1["code"], "VALIDATION_FAILED", "{why}: {}", got.1);
    }
    let got = api_in(
        &server,
        "en-US",
        "PUT",
        "/api/groups/reorder",
        Some(json!({"items": [{"id": a, "sort": 1}, {"id": a, "sort": 2}]})),
    )
    .await;
    assert_eq!(
        got.1["message"],
        format!("Duplicate group ID in reorder items: {a}")
    );
    let bad_json = server
        .api_text("PUT", "/api/groups/reorder", "{items:")
        .await;
    assert_error(&bad_json, 400, "INVALID_JSON");
    let after = ok_data(server.api("GET", "/api/groups", None).await);
    assert_eq!(
        after, before,
        "a refused reorder changes no group, not even the known ones"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn reorder_sets_the_order_the_list_shows() {
    let server = Server::start().await;
    let a = server
        .create_group("a", "openai", UPSTREAM, json!({}))
        .await;
    let b = server
        .create_group("b", "openai", UPSTREAM, json!({}))
        .await;
    let c = server
        .create_group("c", "openai", UPSTREAM, json!({}))
        .await;
    assert_eq!(
        group_names(&server).await,
        ["c", "b", "a"],
        "equal sorts: newest first"
    );

    // The console sends the moved groups only, with sorts 10, 20, 30…
    let body =
        json!({"items": [{"id": a, "sort": 10}, {"id": b, "sort": 20}, {"id": c, "sort": 30}]});
    ok_data(server.api("PUT", "/api/groups/reorder", Some(body)).await);
    assert_eq!(group_names(&server).await, ["a", "b", "c"]);
    assert_eq!(group_named(&server, "b").await["sort"], 20);

    ok_data(
        server
            .api(
                "PUT",
                "/api/groups/reorder",
                Some(json!({"items": [{"id": c, "sort": 5}]})),
            )
            .await,
    );
    assert_eq!(group_names(&server).await, ["c", "a", "b"]);
    let light = ok_data(server.api("GET", "/api/groups/list", None).await);
    assert_eq!(light.as_array().unwrap().len(), 3);
}

// ---- copy -------------------------------------------------------------------------------------

/// The task record once it has finished for `group_name`.
async fn finished_task(server: &Server, group_name: &str) -> Value {
    let wait = async {
        loop {
            let status = ok_data(server.api("GET", "/api/tasks/status", None).await);
            if status["group_name"] == group_name && status["is_running"] == false {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(TASK_TIMEOUT, wait)
        .await
        .unwrap_or_else(|_| panic!("the import for {group_name} did not finish"))
}

async fn copy(server: &Server, id: i64, copy_keys: &str) -> Value {
    let body = json!({"copy_keys": copy_keys});
    let data = ok_data(
        server
            .api("POST", &format!("/api/groups/{id}/copy"), Some(body))
            .await,
    );
    data["group"].clone()
}

async fn key_values(server: &Server, id: i64) -> BTreeSet<String> {
    let keys = server.list_keys(id).await;
    keys.iter()
        .map(|k| k["key_value"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn copy_names_and_copies_every_field() {
    let server = Server::start().await;
    let extra = json!({
        "display_name": "Source", "description": "the original", "sort": 3,
        "validation_endpoint": "/v1/custom", "param_overrides": {"temperature": 0.5},
        "model_redirect_rules": {"a": "b"}, "model_redirect_strict": true,
        "config": {"max_retries": 1, "proxy_url": ""},
        "header_rules": [{"key": "X-Team", "value": "blue", "action": "set"}],
    });
    let id = server
        .create_group("src", "anthropic", UPSTREAM, extra)
        .await;
    let source = group_named(&server, "src").await;

    let first = copy(&server, id, "none").await;
    assert_eq!(first["name"], "src_copy");
    assert_eq!(first["display_name"], "Source Copy");
    assert_ne!(first["id"], source["id"]);
    assert!(
        first["endpoint"]
            .as_str()
            .unwrap()
            .ends_with("/proxy/src_copy"),
        "{first}"
    );
    let same = |g: &Value| {
        let mut g = g.clone();
        for field in [
            "id",
            "name",
            "display_name",
            "endpoint",
            "created_at",
            "updated_at",
        ] {
            g.as_object_mut().unwrap().remove(field);
        }
        g
    };
    assert_eq!(same(&first), same(&source), "every other field is copied");
    assert_eq!(same(&group_named(&server, "src_copy").await), same(&source));

    assert_eq!(copy(&server, id, "none").await["name"], "src_copy_2");
    assert_eq!(copy(&server, id, "none").await["name"], "src_copy_3");
    let copy_id = first["id"].as_i64().unwrap();
    assert_eq!(
        copy(&server, copy_id, "none").await["name"],
        "src_copy_copy"
    );

    // The copy is a group of its own: renaming it leaves the source alone.
    let rename = json!({"display_name": "Mine"});
    ok_data(
        server
            .api("PUT", &format!("/api/groups/{copy_id}"), Some(rename))
            .await,
    );
    assert_eq!(group_named(&server, "src").await["display_name"], "Source");

    let missing = server
        .api("POST", "/api/groups/9999/copy", Some(json!({})))
        .await;
    assert_error(&missing, 404, "NOT_FOUND");
    let bad = server
        .api(
            "POST",
            &format!("/api/groups/{id}/copy"),
            Some(json!({"copy_keys": "some"})),
        )
        .await;
    assert_error(&bad, 400, "VALIDATION_FAILED");
    assert_eq!(
        group_names(&server).await.len(),
        5,
        "refused copies created nothing"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn copy_imports_keys_per_mode_through_the_task() {
    let mut first = Server::start().await;
    let id = first
        .create_group("src", "openai", UPSTREAM, json!({}))
        .await;
    first
        .add_keys(id, &["sk-a1", "sk-a2", "sk-bad1", "sk-bad2"])
        .await;
    assert!(first.stop().await.success());
    // Two keys made invalid in the database, as a v1 blacklist leaves them.
    first
        .db()
        .execute(
            "UPDATE api_keys SET status = 'invalid' WHERE key_value LIKE 'sk-bad%'",
            [],
        )
        .unwrap();
    let server = Server::start_in(&first.dir, &[]).await;

    let all = copy(&server, id, "all").await;
    let task = finished_task(&server, "src_copy").await;
    assert_eq!(task["task_type"], "KEY_IMPORT");
    assert_eq!(task["total"], 4);
    assert_eq!(
        task["result"],
        json!({"added_count": 4, "ignored_count": 0})
    );
    assert!(task["finished_at"].is_string(), "{task}");
    let all_id = all["id"].as_i64().unwrap();
    assert_eq!(
        key_values(&server, all_id).await,
        key_values(&server, id).await
    );
    let copied = server.list_keys(all_id).await;
    assert!(
        copied.iter().all(|k| k["status"] == "active"),
        "a copy starts fresh: {copied:?}"
    );

    let valid = copy(&server, id, "valid_only").await;
    assert_eq!(valid["name"], "src_copy_2");
    let task = finished_task(&server, "src_copy_2").await;
    assert_eq!(task["result"]["added_count"], 2);
    let valid_id = valid["id"].as_i64().unwrap();
    assert_eq!(
        key_values(&server, valid_id).await,
        ["sk-a1".to_string(), "sk-a2".into()].into()
    );

    // The default is all.
    let bare = ok_data(
        server
            .api("POST", &format!("/api/groups/{id}/copy"), Some(json!({})))
            .await,
    );
    finished_task(&server, "src_copy_3").await;
    assert_eq!(
        key_values(&server, bare["group"]["id"].as_i64().unwrap())
            .await
            .len(),
        4
    );

    let none = copy(&server, id, "none").await;
    assert!(
        server
            .list_keys(none["id"].as_i64().unwrap())
            .await
            .is_empty()
    );
    let status = ok_data(server.api("GET", "/api/tasks/status", None).await);
    assert_eq!(
        status["group_name"], "src_copy_3",
        "copy_keys none starts no task"
    );

    // The copied keys serve: the copy's group is in the proxy's snapshot with its keys.
    let stats = server.list_keys(all_id).await;
    assert_eq!(stats.len(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn copy_with_keys_while_a_task_runs_is_409_and_leaves_nothing() {
    let server = Server::start().await;
    let src = server
        .create_group("src", "openai", UPSTREAM, json!({}))
        .await;
    server.add_keys(src, &["sk-1", "sk-2"]).await;
    let big = server
        .create_group("big", "openai", UPSTREAM, json!({}))
        .await;
    // An import big enough to still run when the copy arrives.
    let keys: Vec<String> = (0..50_000).map(|i| format!("sk-bulk-{i:07}")).collect();
    let body = json!({"group_id": big, "keys_text": keys.join("\n")});
    let started = server.api("POST", "/api/keys/add-async", Some(body)).await;
    assert_eq!(started.0, 200, "{}", started.1);

    let got = api_in(
        &server,
        "en-US",
        "POST",
        &format!("/api/groups/{src}/copy"),
        Some(json!({"copy_keys": "all"})),
    )
    .await;
    let status = ok_data(server.api("GET", "/api/tasks/status", None).await);
    assert_eq!(
        status["group_name"], "big",
        "the import was still running: {status}"
    );
    assert_error(&got, 409, "TASK_IN_PROGRESS");
    assert_eq!(got.1["message"], "A task is already running");
    assert_eq!(
        group_names(&server).await,
        ["big", "src"],
        "no copy was left behind"
    );

    // Without keys a copy needs no task.
    let none = server
        .api(
            "POST",
            &format!("/api/groups/{src}/copy"),
            Some(json!({"copy_keys": "none"})),
        )
        .await;
    assert_eq!(ok_data(none)["group"]["name"], "src_copy");
    finished_task(&server, "big").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_aggregate_is_copied_without_members_as_in_v1() {
    let server = Server::start().await;
    let member = server
        .create_group("m", "openai", UPSTREAM, json!({}))
        .await;
    server.add_keys(member, &["sk-m"]).await;
    let body = json!({"name": "agg", "display_name": "Agg", "channel_type": "openai",
        "group_type": "aggregate", "proxy_keys": ""});
    let agg = ok_data(server.api("POST", "/api/groups", Some(body)).await)["id"]
        .as_i64()
        .unwrap();
    let add = json!({"sub_groups": [{"group_id": member, "weight": 10}]});
    ok_data(
        server
            .api("POST", &format!("/api/groups/{agg}/sub-groups"), Some(add))
            .await,
    );

    let copied = copy(&server, agg, "all").await;
    assert_eq!(
        (copied["name"].as_str(), copied["group_type"].as_str()),
        (Some("agg_copy"), Some("aggregate"))
    );
    let copy_id = copied["id"].as_i64().unwrap();
    let members = ok_data(
        server
            .api("GET", &format!("/api/groups/{copy_id}/sub-groups"), None)
            .await,
    );
    assert_eq!(members, json!([]));
    let status = ok_data(server.api("GET", "/api/tasks/status", None).await);
    assert_eq!(
        status["is_running"], false,
        "an aggregate has no keys to import: {status}"
    );
    assert!(status.get("task_type").is_none(), "{status}");
}

// ---- languages --------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn messages_follow_accept_language_zh_cn_by_default() {
    let server = Server::start().await;
    let a = server
        .create_group("a", "openai", UPSTREAM, json!({}))
        .await;
    let reorder = json!({"items": [{"id": a, "sort": 1}]});
    for (lang, success, empty, unauthorized, missing) in [
        (
            "",
            "分组排序已保存",
            "排序项不能为空",
            "认证失败",
            "分组不存在",
        ),
        (
            "zh-CN,zh;q=0.9",
            "分组排序已保存",
            "排序项不能为空",
            "认证失败",
            "分组不存在",
        ),
        (
            "en-US,en;q=0.9",
            "Group order saved",
            "Reorder items cannot be empty",
            "Authentication failed",
            "Group not found",
        ),
        (
            "ja-JP",
            "グループの並び順を保存しました",
            "並び替え項目は空にできません",
            "認証失敗",
            "グループが存在しません",
        ),
    ] {
        let got = api_in(
            &server,
            lang,
            "PUT",
            "/api/groups/reorder",
            Some(reorder.clone()),
        )
        .await;
        assert_eq!(
            (got.0, got.1["message"].as_str()),
            (200, Some(success)),
            "{lang}: {}",
            got.1
        );
        let got = api_in(
            &server,
            lang,
            "PUT",
            "/api/groups/reorder",
            Some(json!({"items": []})),
        )
        .await;
        assert_eq!(got.1["message"], empty, "{lang}");
        let got = api_in(&server, lang, "PUT", "/api/groups/9999", Some(json!({}))).await;
        assert_eq!(
            (got.0, got.1["message"].as_str()),
            (404, Some(missing)),
            "{lang}: {}",
            got.1
        );
        let resp = server
            .client
            .get(server.url("/api/groups"))
            .header("accept-language", lang)
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 401);
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["message"], unauthorized, "{lang}");
    }
    let server = &server;
    let plain = |lang| async move {
        api_in(server, lang, "GET", "/api/groups", None).await.1["message"].clone()
    };
    assert_eq!(plain("en-US").await, "Operation successful");
    assert_eq!(plain("ja-JP").await, "操作成功", "v1's ja-JP text");
    assert_eq!(plain("fr-FR").await, "操作成功");

    // A detail with no translation keeps its English after a localised title.
    let body = json!({"name": "Bad Name", "channel_type": "openai", "test_model": "m",
        "upstreams": [{"url": UPSTREAM, "weight": 1}]});
    let zh = api_in(server, "zh-CN", "POST", "/api/groups", Some(body.clone())).await;
    assert_error(&zh, 400, "VALIDATION_FAILED");
    let message = zh.1["message"].as_str().unwrap();
    assert!(
        message.starts_with("参数无效: ") && message.contains("Bad Name"),
        "{message}"
    );
    let en = api_in(server, "en-US", "POST", "/api/groups", Some(body)).await;
    assert!(
        !en.1["message"].as_str().unwrap().contains("参数"),
        "{}",
        en.1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn settings_metadata_follows_accept_language() {
    let server = Server::start().await;
    for (lang, categories, retries, option_name) in [
        (
            "zh-CN",
            ["基础参数", "请求设置", "密钥配置"],
            "最大重试次数",
            "请求超时（秒）",
        ),
        (
            "en-US",
            ["Basic", "Request Settings", "Key Configuration"],
            "Max Retries",
            "Request Timeout (seconds)",
        ),
        (
            "ja-JP",
            ["基本設定", "リクエスト設定", "キー設定"],
            "最大リトライ数",
            "リクエストタイムアウト（秒）",
        ),
    ] {
        let data = ok_data(api_in(&server, lang, "GET", "/api/settings", None).await);
        let data = data.as_array().expect("categories");
        let names: Vec<&str> = data
            .iter()
            .map(|c| c["category_name"].as_str().unwrap())
            .collect();
        assert_eq!(names, categories, "{lang}");
        let settings: Vec<&Value> = data
            .iter()
            .flat_map(|c| c["settings"].as_array().unwrap())
            .collect();
        let setting = |key: &str| *settings.iter().find(|s| s["key"] == key).unwrap();
        assert_eq!(setting("max_retries")["name"], retries, "{lang}");
        assert_eq!(setting("max_retries")["category"], categories[2], "{lang}");
        assert!(
            settings
                .iter()
                .all(|s| s["description"].as_str().is_some_and(|d| !d.is_empty()))
        );

        let options =
            ok_data(api_in(&server, lang, "GET", "/api/groups/config-options", None).await);
        let timeout = options
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["key"] == "request_timeout")
            .unwrap()
            .clone();
        assert_eq!(timeout["name"], option_name, "{lang}");
        assert_eq!(
            timeout["description"],
            setting("request_timeout")["description"],
            "{lang}"
        );
    }
    // Keys, values and order do not depend on the language.
    let zh = ok_data(api_in(&server, "zh-CN", "GET", "/api/settings", None).await);
    let en = ok_data(api_in(&server, "en-US", "GET", "/api/settings", None).await);
    let shape = |v: &Value| -> Vec<(Value, Value)> {
        v.as_array()
            .unwrap()
            .iter()
            .flat_map(|c| c["settings"].as_array().unwrap())
            .map(|s| (s["key"].clone(), s["value"].clone()))
            .collect()
    };
    assert_eq!(shape(&zh), shape(&en));
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_before_any_handler_keep_v1_shapes() {
    let server = Server::start().await;
    let id = server
        .create_group("a", "openai", UPSTREAM, json!({}))
        .await;
    // A wrong method: v1's 405 body.
    let got = server.api("PATCH", "/api/groups", Some(json!({}))).await;
    assert_eq!(got, (405, json!({"error": "Method not allowed"})));
    // A query parameter twice: the envelope, not poem's plain text.
    let path = format!("/api/keys?group_id={id}&status=active&status=invalid");
    let got = api_in(&server, "en-US", "GET", &path, None).await;
    assert_error(&got, 400, "BAD_REQUEST");
    let got = api_in(&server, "zh-CN", "GET", &path, None).await;
    assert!(
        got.1["message"].as_str().unwrap().starts_with("请求错误: "),
        "{}",
        got.1
    );
    // A JSON array where an object belongs is v1's INVALID_JSON, not an empty update.
    let got = server
        .api_text("PUT", &format!("/api/groups/{id}"), "[null, null]")
        .await;
    assert_error(&got, 400, "INVALID_JSON");
}
