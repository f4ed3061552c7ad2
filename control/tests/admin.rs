//! The admin API (spec §3) against the real binary, used the way the web console and scripts use
//! it: AUTH_KEY in any of its four places, groups, keys and settings, with v1's envelope and
//! error codes, and every change visible to the very next proxy request.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{AUTH_KEY, PROXY_KEY, Server, chat, chat_path};
use mock_upstream::MockUpstream;
use serde_json::{Value, json};

/// Bound on waiting for the mock to see a request; a failure, not a sleep.
const MOCK_TIMEOUT: Duration = Duration::from_secs(10);

async fn assert_healthy(server: &Server) {
    let resp = server
        .client
        .get(server.url("/health"))
        .send()
        .await
        .expect("health request");
    assert_eq!(resp.status(), 200, "the server stopped serving");
    let body: Value = resp.json().await.expect("health body");
    assert_eq!(body["status"], "healthy");
}

/// v1's error envelope: exactly this status and code, and a message.
#[track_caller]
fn assert_error(got: &(u16, Value), status: u16, code: &str) {
    assert_eq!(got.0, status, "status of {}", got.1);
    assert_eq!(got.1["code"], code, "code of {}", got.1);
    assert!(
        got.1["message"].as_str().is_some_and(|m| !m.is_empty()),
        "no message in {}",
        got.1
    );
}

/// The success envelope; returns `data`.
#[track_caller]
fn ok_data(got: (u16, Value)) -> Value {
    assert_eq!(got.0, 200, "{}", got.1);
    assert_eq!(got.1["code"], 0, "{}", got.1);
    got.1["data"].clone()
}

/// `base` with the fields of `patch` set.
fn with(base: &Value, patch: Value) -> Value {
    let mut out = base.clone();
    for (k, v) in patch.as_object().expect("patch is an object") {
        out[k] = v.clone();
    }
    out
}

fn without(base: &Value, field: &str) -> Value {
    let mut out = base.clone();
    out.as_object_mut().expect("object").remove(field);
    out
}

/// The upstream key of every request the mock received.
fn upstream_keys(mock: &MockUpstream) -> Vec<String> {
    mock.requests()
        .iter()
        .map(|r| r.upstream_key().unwrap_or_default())
        .collect()
}

// ---- §3.1 auth ------------------------------------------------------------------------------

/// Where a client puts a key (spec §3.1).
#[derive(Clone, Copy, Debug)]
enum KeyPlace {
    Query,
    Bearer,
    XApiKey,
    XGoogApiKey,
}

const KEY_PLACES: [KeyPlace; 4] = [
    KeyPlace::Query,
    KeyPlace::Bearer,
    KeyPlace::XApiKey,
    KeyPlace::XGoogApiKey,
];

/// An admin call with `key` in `place` (or no key at all).
async fn call_with(
    server: &Server,
    method: &str,
    path: &str,
    body: Option<&Value>,
    key: Option<(KeyPlace, &str)>,
) -> (u16, Value) {
    let mut url = server.url(path);
    if let Some((KeyPlace::Query, key)) = key {
        let sep = if path.contains('?') { '&' } else { '?' };
        url = format!("{url}{sep}key={key}");
    }
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = server.client.request(method, url);
    req = match key {
        Some((KeyPlace::Bearer, k)) => req.bearer_auth(k),
        Some((KeyPlace::XApiKey, k)) => req.header("X-Api-Key", k),
        Some((KeyPlace::XGoogApiKey, k)) => req.header("X-Goog-Api-Key", k),
        Some((KeyPlace::Query, _)) | None => req,
    };
    if let Some(body) = body {
        req = req.json(body);
    }
    let resp = req.send().await.expect("admin request");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_1_protected_endpoints_reject_a_missing_or_wrong_auth_key() {
    let server = Server::start().await;
    let id = server
        .create_group("probe", "openai", "https://api.example.com", json!({}))
        .await;
    let before_groups = ok_data(server.api("GET", "/api/groups", None).await);
    let before_settings = ok_data(server.api("GET", "/api/settings", None).await);
    let keys_body = json!({"group_id": id, "keys_text": "sk-should-not-be-added"});
    let group_body = json!({"name": "intruder", "channel_type": "openai", "test_model": "m",
        "upstreams": [{"url": "https://api.example.com", "weight": 1}]});
    let protected: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", "/api/groups".into(), None),
        ("POST", "/api/groups".into(), Some(group_body)),
        ("GET", "/api/groups/list".into(), None),
        (
            "PUT",
            format!("/api/groups/{id}"),
            Some(json!({"display_name": "hacked"})),
        ),
        ("DELETE", format!("/api/groups/{id}"), None),
        ("GET", "/api/channel-types".into(), None),
        ("GET", format!("/api/keys?group_id={id}"), None),
        (
            "POST",
            "/api/keys/add-multiple".into(),
            Some(keys_body.clone()),
        ),
        ("POST", "/api/keys/delete-multiple".into(), Some(keys_body)),
        ("GET", "/api/settings".into(), None),
        (
            "PUT",
            "/api/settings".into(),
            Some(json!({"max_retries": 7})),
        ),
    ];
    for (method, path, body) in &protected {
        let got = call_with(&server, method, path, body.as_ref(), None).await;
        assert_error(&got, 401, "UNAUTHORIZED");
        for place in KEY_PLACES {
            let wrong = Some((place, "sk-wrong-admin-key"));
            let got = call_with(&server, method, path, body.as_ref(), wrong).await;
            assert_error(&got, 401, "UNAUTHORIZED");
            // A prefix of the right key is still wrong (no prefix or length shortcuts).
            let prefix = Some((place, &AUTH_KEY[..AUTH_KEY.len() - 1]));
            let got = call_with(&server, method, path, body.as_ref(), prefix).await;
            assert_error(&got, 401, "UNAUTHORIZED");
        }
    }
    // None of the refused calls changed anything.
    let after_groups = ok_data(server.api("GET", "/api/groups", None).await);
    assert_eq!(after_groups, before_groups);
    let keys = ok_data(
        server
            .api("GET", &format!("/api/keys?group_id={id}"), None)
            .await,
    );
    assert_eq!(keys["pagination"]["total_items"], 0);
    let after_settings = ok_data(server.api("GET", "/api/settings", None).await);
    assert_eq!(after_settings, before_settings);
    assert_healthy(&server).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_1_auth_key_is_accepted_in_all_four_places() {
    let server = Server::start().await;
    for place in KEY_PLACES {
        let got = call_with(&server, "GET", "/api/groups", None, Some((place, AUTH_KEY))).await;
        assert_eq!(got.0, 200, "{place:?}: {}", got.1);
        assert_eq!(got.1["code"], 0, "{place:?}");
        // Also on a route with its own query string.
        let got = call_with(
            &server,
            "GET",
            "/api/keys?group_id=999",
            None,
            Some((place, AUTH_KEY)),
        )
        .await;
        assert_error(&got, 404, "NOT_FOUND");
        let body = json!({"request_log_retention_days": 8});
        let got = call_with(
            &server,
            "PUT",
            "/api/settings",
            Some(&body),
            Some((place, AUTH_KEY)),
        )
        .await;
        assert_eq!(got.0, 200, "{place:?}: {}", got.1);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_2_unknown_api_path_is_404_not_found() {
    let server = Server::start().await;
    for path in ["/api/no-such-thing", "/api/groups/1/nope/deeper"] {
        let got = server.api("GET", path, None).await;
        assert_eq!(got.0, 404, "{path}");
        assert_eq!(got.1, json!({"error": "Not Found"}), "{path}");
    }
    assert_healthy(&server).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_3_login_answers_200_401_and_400() {
    let server = Server::start().await;
    let login = |body: String| {
        server
            .client
            .post(server.url("/api/auth/login"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let resp = login(json!({"auth_key": AUTH_KEY}).to_string())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["success"], true);
    assert!(body["message"].is_string());

    for wrong in ["sk-wrong", "", &AUTH_KEY[1..]] {
        let resp = login(json!({"auth_key": wrong}).to_string()).await.unwrap();
        assert_eq!(resp.status(), 401, "auth_key '{wrong}'");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["success"], false);
    }
    let resp = login("{not json".into()).await.unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["success"], false);
    assert_healthy(&server).await;
}

// ---- §3.3 groups ----------------------------------------------------------------------------

/// A group using every field of v1's create body.
fn full_group(name: &str, upstream: &str) -> Value {
    json!({
        "name": name,
        "display_name": "Main Pool",
        "description": "the main pool",
        "group_type": "standard",
        "upstreams": [{"url": upstream, "weight": 3}, {"url": "https://spare.example.com", "weight": 0}],
        "channel_type": "openai",
        "sort": 5,
        "test_model": "gpt-4.1-nano",
        "validation_endpoint": "/v1/chat/completions",
        "param_overrides": {"temperature": 0.5},
        "config": {"max_retries": 2, "failover_status_codes": "429,500-599"},
        "header_rules": [
            {"key": "x-custom", "value": "1", "action": "set"},
            {"key": "X-Drop", "value": "", "action": "remove"},
        ],
        "model_redirect_rules": {"gpt-4": "gpt-4.1"},
        "model_redirect_strict": true,
        "proxy_keys": " gk-one , gk-two ",
    })
}

const GROUP_RESPONSE_FIELDS: [&str; 20] = [
    "id",
    "name",
    "display_name",
    "description",
    "group_type",
    "upstreams",
    "channel_type",
    "sort",
    "test_model",
    "validation_endpoint",
    "param_overrides",
    "config",
    "header_rules",
    "model_redirect_rules",
    "model_redirect_strict",
    "proxy_keys",
    "endpoint",
    "last_validated_at",
    "created_at",
    "updated_at",
];

fn split_keys(list: &Value) -> Vec<String> {
    list.as_str()
        .expect("proxy_keys is a string")
        .split(',')
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_3_group_create_returns_v1_group_response() {
    let server = Server::start().await;
    let group = ok_data(
        server
            .api(
                "POST",
                "/api/groups",
                Some(full_group("main-pool", "https://api.example.com/")),
            )
            .await,
    );
    for field in GROUP_RESPONSE_FIELDS {
        assert!(
            group.get(field).is_some(),
            "GroupResponse lacks '{field}': {group}"
        );
    }
    assert!(group["id"].as_i64().is_some_and(|id| id > 0));
    assert_eq!(group["name"], "main-pool");
    assert_eq!(group["display_name"], "Main Pool");
    assert_eq!(group["description"], "the main pool");
    assert_eq!(group["group_type"], "standard");
    assert_eq!(group["channel_type"], "openai");
    assert_eq!(group["sort"], 5);
    assert_eq!(group["test_model"], "gpt-4.1-nano");
    assert_eq!(group["validation_endpoint"], "/v1/chat/completions");
    assert_eq!(group["param_overrides"], json!({"temperature": 0.5}));
    assert_eq!(
        group["config"],
        json!({"max_retries": 2, "failover_status_codes": "429,500-599"})
    );
    assert_eq!(group["model_redirect_rules"], json!({"gpt-4": "gpt-4.1"}));
    assert_eq!(group["model_redirect_strict"], true);
    assert_eq!(split_keys(&group["proxy_keys"]), ["gk-one", "gk-two"]);
    let upstreams = group["upstreams"].as_array().expect("upstreams array");
    assert_eq!(upstreams.len(), 2);
    assert_eq!(upstreams[0]["weight"], 3);
    assert!(
        upstreams[0]["url"]
            .as_str()
            .is_some_and(|u| u.starts_with("https://api.example.com"))
    );
    assert_eq!(
        upstreams[1],
        json!({"url": "https://spare.example.com", "weight": 0})
    );
    // Header names are stored in canonical form, as Go's CanonicalHeaderKey writes them.
    let rules = group["header_rules"]
        .as_array()
        .expect("header_rules array");
    assert_eq!(rules.len(), 2);
    assert_eq!(rules[0]["key"], "X-Custom");
    assert_eq!(rules[0]["action"], "set");
    assert_eq!(rules[1]["key"], "X-Drop");
    assert_eq!(rules[1]["action"], "remove");
    // app_url is seeded from HOST and PORT.
    assert_eq!(
        group["endpoint"],
        format!("http://127.0.0.1:{}/proxy/main-pool", server.port)
    );
    assert!(group["last_validated_at"].is_null());
    for stamp in ["created_at", "updated_at"] {
        let text = group[stamp].as_str().expect("time is a string");
        chrono::DateTime::parse_from_rfc3339(text)
            .unwrap_or_else(|e| panic!("{stamp} '{text}' is not RFC 3339: {e}"));
    }
    // The list shows the very same object.
    let list = ok_data(server.api("GET", "/api/groups", None).await);
    assert_eq!(list, json!([group]));
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_3_group_list_is_ordered_by_sort_then_newest_first() {
    let server = Server::start().await;
    for (name, sort) in [("g-a", 1), ("g-b", 0), ("g-c", 1), ("g-d", 0)] {
        let extra = json!({"sort": sort, "display_name": format!("{name} shown")});
        server
            .create_group(name, "openai", "https://api.example.com", extra)
            .await;
    }
    let expected = ["g-d", "g-b", "g-c", "g-a"];
    let list = ok_data(server.api("GET", "/api/groups", None).await);
    let names: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .map(|g| g["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, expected);

    let light = ok_data(server.api("GET", "/api/groups/list", None).await);
    let light = light.as_array().expect("array");
    assert_eq!(light.len(), 4);
    for (item, (full, name)) in light
        .iter()
        .zip(list.as_array().unwrap().iter().zip(expected))
    {
        let fields: BTreeSet<&str> = item
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            fields,
            BTreeSet::from(["id", "name", "display_name"]),
            "{item}"
        );
        assert_eq!(item["name"], name);
        assert_eq!(item["id"], full["id"]);
        assert_eq!(item["display_name"], format!("{name} shown"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_3_group_update_changes_only_the_given_fields() {
    let server = Server::start().await;
    let created = ok_data(
        server
            .api(
                "POST",
                "/api/groups",
                Some(full_group("editable", "https://api.example.com")),
            )
            .await,
    );
    let id = created["id"].as_i64().unwrap();
    let path = format!("/api/groups/{id}");
    let unchanged_but = |before: &Value, after: &Value, changed: &[&str]| {
        for field in GROUP_RESPONSE_FIELDS {
            if field == "updated_at" || changed.contains(&field) {
                continue;
            }
            assert_eq!(after[field], before[field], "'{field}' changed");
        }
    };

    let renamed = ok_data(
        server
            .api("PUT", &path, Some(json!({"display_name": "Renamed"})))
            .await,
    );
    assert_eq!(renamed["display_name"], "Renamed");
    unchanged_but(&created, &renamed, &["display_name"]);

    let new_upstreams = json!([{"url": "https://b.example.com", "weight": 2}]);
    let moved = ok_data(
        server
            .api("PUT", &path, Some(json!({"upstreams": new_upstreams})))
            .await,
    );
    assert_eq!(moved["upstreams"], new_upstreams, "upstreams are replaced");
    unchanged_but(&renamed, &moved, &["upstreams"]);

    // v1 ignores an empty test_model on update.
    let same = ok_data(
        server
            .api("PUT", &path, Some(json!({"test_model": ""})))
            .await,
    );
    unchanged_but(&moved, &same, &[]);

    let reconfigured = ok_data(
        server
            .api(
                "PUT",
                &path,
                Some(json!({"sort": 9, "config": {}, "header_rules": [], "name": "edited"})),
            )
            .await,
    );
    assert_eq!(reconfigured["sort"], 9);
    assert_eq!(reconfigured["config"], json!({}));
    assert_eq!(reconfigured["header_rules"], json!([]));
    assert_eq!(reconfigured["name"], "edited");
    assert_eq!(
        reconfigured["endpoint"],
        format!("http://127.0.0.1:{}/proxy/edited", server.port)
    );
    unchanged_but(
        &same,
        &reconfigured,
        &["sort", "config", "header_rules", "name", "endpoint"],
    );
    let list = ok_data(server.api("GET", "/api/groups", None).await);
    assert_eq!(
        list,
        json!([reconfigured]),
        "the list shows the stored group"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_3_group_duplicate_name_is_409() {
    let server = Server::start().await;
    server
        .create_group("dup", "openai", "https://api.example.com", json!({}))
        .await;
    let body = json!({"name": "dup", "channel_type": "gemini", "test_model": "m",
        "upstreams": [{"url": "https://other.example.com", "weight": 1}]});
    let got = server.api("POST", "/api/groups", Some(body)).await;
    assert_error(&got, 409, "DUPLICATE_RESOURCE");
    assert_healthy(&server).await;

    let other = server
        .create_group("other", "openai", "https://api.example.com", json!({}))
        .await;
    let got = server
        .api(
            "PUT",
            &format!("/api/groups/{other}"),
            Some(json!({"name": "dup"})),
        )
        .await;
    assert_error(&got, 409, "DUPLICATE_RESOURCE");
    assert_healthy(&server).await;

    let list = ok_data(server.api("GET", "/api/groups", None).await);
    let names: BTreeSet<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, BTreeSet::from(["dup", "other"]));
    let dup = list
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "dup")
        .unwrap();
    assert_eq!(
        dup["channel_type"], "openai",
        "the first 'dup' is untouched"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_3_group_create_and_update_validate_their_input() {
    let server = Server::start().await;
    let base = json!({"name": "valid", "channel_type": "openai", "test_model": "m",
        "upstreams": [{"url": "https://api.example.com", "weight": 1}]});
    let invalid: Vec<(&str, Value)> = vec![
        (
            "name with a space and capitals",
            json!({"name": "Bad Name"}),
        ),
        ("name too long", json!({"name": "a".repeat(101)})),
        ("unknown channel_type", json!({"channel_type": "foo"})),
        ("no upstreams", json!({"upstreams": []})),
        (
            "upstream not http(s)",
            json!({"upstreams": [{"url": "ftp://files.example.com", "weight": 1}]}),
        ),
        (
            "all weights 0",
            json!({"upstreams": [{"url": "https://a.example.com", "weight": 0},
                                 {"url": "https://b.example.com", "weight": 0}]}),
        ),
        (
            "negative weight",
            json!({"upstreams": [{"url": "https://a.example.com", "weight": -1},
                                 {"url": "https://b.example.com", "weight": 1}]}),
        ),
        ("blank test_model", json!({"test_model": "   "})),
        (
            "validation_endpoint without a leading /",
            json!({"validation_endpoint": "v1/chat/completions"}),
        ),
        (
            "validation_endpoint with a URL",
            json!({"validation_endpoint": "/go?to=https://evil.example.com"}),
        ),
        (
            "config with app_url",
            json!({"config": {"app_url": "http://x"}}),
        ),
        (
            "config with proxy_keys",
            json!({"config": {"proxy_keys": "k"}}),
        ),
        (
            "config with an unknown key",
            json!({"config": {"no_such_setting": 1}}),
        ),
        (
            "config below the minimum",
            json!({"config": {"max_retries": -1}}),
        ),
        (
            "config with a wrong type",
            json!({"config": {"request_timeout": "soon"}}),
        ),
        (
            "config with a bad failover spec",
            json!({"config": {"failover_status_codes": "500-400"}}),
        ),
        (
            "duplicate header rules",
            json!({"header_rules": [{"key": "X-A", "value": "1", "action": "set"},
                                    {"key": "x-a", "value": "2", "action": "set"}]}),
        ),
        (
            "bad header action",
            json!({"header_rules": [{"key": "X-A", "value": "1", "action": "replace"}]}),
        ),
    ];
    let mut create_cases: Vec<(String, Value)> = invalid
        .iter()
        .map(|(why, patch)| (why.to_string(), with(&base, patch.clone())))
        .collect();
    for field in ["name", "channel_type", "upstreams", "test_model"] {
        create_cases.push((format!("missing {field}"), without(&base, field)));
    }
    for (why, body) in &create_cases {
        let got = server.api("POST", "/api/groups", Some(body.clone())).await;
        assert_eq!(got.0, 400, "create with {why}: {}", got.1);
        assert_error(&got, 400, "VALIDATION_FAILED");
        assert_healthy(&server).await;
    }
    let list = ok_data(server.api("GET", "/api/groups", None).await);
    assert_eq!(list, json!([]), "no invalid group was created");

    let id = server
        .create_group("valid", "openai", "https://api.example.com", json!({}))
        .await;
    let before = ok_data(server.api("GET", "/api/groups", None).await);
    for (why, patch) in &invalid {
        let got = server
            .api("PUT", &format!("/api/groups/{id}"), Some(patch.clone()))
            .await;
        assert_eq!(got.0, 400, "update with {why}: {}", got.1);
        assert_error(&got, 400, "VALIDATION_FAILED");
    }
    let after = ok_data(server.api("GET", "/api/groups", None).await);
    assert_eq!(after, before, "no invalid update was stored");
    assert_healthy(&server).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_2_bad_json_is_invalid_json() {
    let server = Server::start().await;
    let id = server
        .create_group("target", "openai", "https://api.example.com", json!({}))
        .await;
    let cases = [
        ("POST", "/api/groups".to_string(), "{not json"),
        ("POST", "/api/groups".to_string(), r#"{"name": 5}"#),
        ("PUT", format!("/api/groups/{id}"), "[1, 2"),
        ("PUT", format!("/api/groups/{id}"), r#"{"sort": "first"}"#),
        (
            "POST",
            "/api/keys/add-multiple".to_string(),
            "{\"group_id\": ",
        ),
        ("POST", "/api/keys/delete-multiple".to_string(), "nope"),
        ("PUT", "/api/settings".to_string(), "{\"max_retries\": }"),
        ("PUT", "/api/settings".to_string(), "[1, 2]"),
    ];
    for (method, path, body) in &cases {
        let got = server.api_text(method, path, body).await;
        assert_eq!(got.0, 400, "{method} {path} {body}: {}", got.1);
        assert_error(&got, 400, "INVALID_JSON");
        assert_healthy(&server).await;
    }
    let list = ok_data(server.api("GET", "/api/groups", None).await);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["sort"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_3_group_unknown_id_is_404_and_non_numeric_id_is_400() {
    let server = Server::start().await;
    server
        .create_group("existing", "openai", "https://api.example.com", json!({}))
        .await;
    let got = server
        .api(
            "PUT",
            "/api/groups/99999",
            Some(json!({"display_name": "x"})),
        )
        .await;
    assert_error(&got, 404, "NOT_FOUND");
    let got = server.api("DELETE", "/api/groups/99999", None).await;
    assert_error(&got, 404, "NOT_FOUND");
    for id in ["abc", "1.5", "1e3"] {
        let got = server
            .api(
                "PUT",
                &format!("/api/groups/{id}"),
                Some(json!({"display_name": "x"})),
            )
            .await;
        assert_error(&got, 400, "BAD_REQUEST");
        let got = server
            .api("DELETE", &format!("/api/groups/{id}"), None)
            .await;
        assert_error(&got, 400, "BAD_REQUEST");
    }
    assert_healthy(&server).await;
    let list = ok_data(server.api("GET", "/api/groups", None).await);
    assert_eq!(list.as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_3_group_delete_removes_the_group_and_its_keys() {
    let mock = MockUpstream::start().await;
    let mut server = Server::start().await;
    let doomed = server
        .create_group("doomed", "openai", &mock.url(), json!({}))
        .await;
    server
        .add_keys(doomed, &["sk-doomed-1", "sk-doomed-2"])
        .await;
    let kept = server
        .create_group("kept", "openai", &mock.url(), json!({}))
        .await;
    server.add_keys(kept, &["sk-kept-1"]).await;
    let resp = server.proxy_post(&chat_path("doomed"), chat()).await;
    assert_eq!(resp.status(), 200);

    ok_data(
        server
            .api("DELETE", &format!("/api/groups/{doomed}"), None)
            .await,
    );
    let list = ok_data(server.api("GET", "/api/groups", None).await);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["kept"]);
    let got = server
        .api("GET", &format!("/api/keys?group_id={doomed}"), None)
        .await;
    assert_error(&got, 404, "NOT_FOUND");
    let got = server
        .api("DELETE", &format!("/api/groups/{doomed}"), None)
        .await;
    assert_error(&got, 404, "NOT_FOUND");
    // The proxy forgot it at once; the other group still serves.
    let resp = server.proxy_post(&chat_path("doomed"), chat()).await;
    assert_eq!(resp.status(), 404);
    mock.clear();
    let resp = server.proxy_post(&chat_path("kept"), chat()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(upstream_keys(&mock), ["sk-kept-1"]);

    assert!(server.stop().await.success());
    let db = server.db();
    let count = |sql: &str| -> i64 { db.query_row(sql, [doomed], |r| r.get(0)).unwrap() };
    assert_eq!(count("SELECT COUNT(*) FROM groups WHERE id = ?1"), 0);
    assert_eq!(
        count("SELECT COUNT(*) FROM api_keys WHERE group_id = ?1"),
        0
    );
    let kept_keys: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM api_keys WHERE group_id = ?1",
            [kept],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(kept_keys, 1);
    server.assert_logs_free_of(&[AUTH_KEY, "sk-doomed-1", "sk-doomed-2", "sk-kept-1"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_3_channel_types_are_the_four_v1_channels() {
    let server = Server::start().await;
    let types = ok_data(server.api("GET", "/api/channel-types", None).await);
    let types: BTreeSet<&str> = types
        .as_array()
        .expect("array")
        .iter()
        .map(|t| t.as_str().expect("string"))
        .collect();
    assert_eq!(
        types,
        BTreeSet::from(["openai", "openai-response", "gemini", "anthropic"])
    );
}

// ---- §3.3 keys ------------------------------------------------------------------------------

async fn add_text(server: &Server, group_id: i64, text: &str) -> (u16, Value) {
    let body = json!({"group_id": group_id, "keys_text": text});
    server
        .api("POST", "/api/keys/add-multiple", Some(body))
        .await
}

async fn delete_text(server: &Server, group_id: i64, text: &str) -> (u16, Value) {
    let body = json!({"group_id": group_id, "keys_text": text});
    server
        .api("POST", "/api/keys/delete-multiple", Some(body))
        .await
}

/// Every key of the group (one page of up to 1000).
async fn key_values(server: &Server, group_id: i64, query: &str) -> Vec<String> {
    let path = format!("/api/keys?group_id={group_id}&page_size=1000{query}");
    let data = ok_data(server.api("GET", &path, None).await);
    data["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|k| k["key_value"].as_str().expect("key_value").to_string())
        .collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_3_add_multiple_counts_added_ignored_and_total() {
    let server = Server::start().await;
    let id = server
        .create_group("keys", "openai", "https://api.example.com", json!({}))
        .await;
    // Any run of whitespace, commas and semicolons separates; a repeated key is ignored.
    let got = add_text(&server, id, "sk-a, sk-b;sk-c\nsk-d\t sk-e  sk-a ,,;\r\n").await;
    assert_eq!(
        ok_data(got),
        json!({"added_count": 5, "ignored_count": 1, "total_in_group": 5})
    );
    // A JSON array of strings; trimmed; one already stored, one repeated.
    let got = add_text(&server, id, r#"["sk-f", "sk-a", "sk-f", " sk-g "]"#).await;
    assert_eq!(
        ok_data(got),
        json!({"added_count": 2, "ignored_count": 2, "total_in_group": 7})
    );
    let got = add_text(&server, id, "sk-a sk-b sk-c sk-d sk-e sk-f sk-g").await;
    assert_eq!(
        ok_data(got),
        json!({"added_count": 0, "ignored_count": 7, "total_in_group": 7})
    );
    assert_eq!(
        sorted(key_values(&server, id, "").await),
        ["sk-a", "sk-b", "sk-c", "sk-d", "sk-e", "sk-f", "sk-g"]
    );
    // The same key may live in another group.
    let other = server
        .create_group("other", "openai", "https://api.example.com", json!({}))
        .await;
    let got = add_text(&server, other, "sk-a").await;
    assert_eq!(
        ok_data(got),
        json!({"added_count": 1, "ignored_count": 0, "total_in_group": 1})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_3_key_list_pages_filters_and_searches() {
    let mut first = Server::start().await;
    let server = &first;
    let id = server
        .create_group("paged", "openai", "https://api.example.com", json!({}))
        .await;
    let all: Vec<String> = (0..23).map(|i| format!("sk-page-{i:02}")).collect();
    let text = all.join("\n");
    let got = add_text(server, id, &text).await;
    assert_eq!(ok_data(got)["added_count"], 23);

    let page = |n: u32, size: u32| format!("/api/keys?group_id={id}&page={n}&page_size={size}");
    let page_one = ok_data(server.api("GET", &page(1, 10), None).await);
    assert_eq!(
        page_one["pagination"],
        json!({"page": 1, "page_size": 10, "total_items": 23, "total_pages": 3})
    );
    let items = page_one["items"].as_array().unwrap();
    assert_eq!(items.len(), 10);
    for field in [
        "id",
        "key_value",
        "group_id",
        "status",
        "request_count",
        "failure_count",
        "last_used_at",
        "created_at",
        "updated_at",
    ] {
        assert!(
            items[0].get(field).is_some(),
            "key item lacks '{field}': {}",
            items[0]
        );
    }
    assert_eq!(items[0]["group_id"], id);
    assert_eq!(items[0]["status"], "active");
    // Never used, so newest (highest id) first.
    let ids: Vec<i64> = items.iter().map(|k| k["id"].as_i64().unwrap()).collect();
    assert!(
        ids.windows(2).all(|w| w[0] > w[1]),
        "ids not descending: {ids:?}"
    );
    let last = ok_data(server.api("GET", &page(3, 10), None).await);
    assert_eq!(last["items"].as_array().unwrap().len(), 3);
    assert_eq!(last["pagination"]["page"], 3);
    let mut seen = BTreeSet::new();
    for n in 1..=3 {
        let data = ok_data(server.api("GET", &page(n, 10), None).await);
        for k in data["items"].as_array().unwrap() {
            assert!(
                seen.insert(k["key_value"].as_str().unwrap().to_string()),
                "repeated {k}"
            );
        }
    }
    assert_eq!(seen.len(), 23);
    let default = ok_data(
        server
            .api("GET", &format!("/api/keys?group_id={id}"), None)
            .await,
    );
    assert_eq!(
        default["pagination"]["page_size"], 15,
        "v1's default page size"
    );
    assert_eq!(default["pagination"]["total_pages"], 2);
    let capped = ok_data(server.api("GET", &page(1, 5000), None).await);
    assert_eq!(
        capped["pagination"]["page_size"], 1000,
        "v1 caps page_size at 1000"
    );

    // key_value is an exact match (through the hash), never a substring search.
    assert_eq!(
        key_values(server, id, "&key_value=sk-page-07").await,
        ["sk-page-07"]
    );
    assert!(
        key_values(server, id, "&key_value=sk-page-0")
            .await
            .is_empty()
    );
    assert_eq!(key_values(server, id, "&status=active").await.len(), 23);
    assert!(key_values(server, id, "&status=invalid").await.is_empty());
    let got = server
        .api(
            "GET",
            &format!("/api/keys?group_id={id}&status=bogus"),
            None,
        )
        .await;
    assert_error(&got, 400, "VALIDATION_FAILED");

    // Two keys made invalid in the database (as a v1 blacklist leaves them) while stopped.
    assert!(first.stop().await.success());
    first
        .db()
        .execute(
            "UPDATE api_keys SET status = 'invalid' WHERE key_value IN ('sk-page-01', 'sk-page-02')",
            [],
        )
        .unwrap();
    let second = Server::start_in(&first.dir, &[]).await;
    let server = &second;
    assert_eq!(
        sorted(key_values(server, id, "&status=invalid").await),
        ["sk-page-01", "sk-page-02"]
    );
    assert_eq!(key_values(server, id, "&status=active").await.len(), 21);
    let both = ok_data(
        server
            .api(
                "GET",
                &format!("/api/keys?group_id={id}&status=invalid&key_value=sk-page-01"),
                None,
            )
            .await,
    );
    assert_eq!(both["pagination"]["total_items"], 1);
    assert_eq!(both["items"][0]["status"], "invalid");
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_3_delete_multiple_counts_deleted_ignored_and_total() {
    let server = Server::start().await;
    let id = server
        .create_group("deleting", "openai", "https://api.example.com", json!({}))
        .await;
    server
        .add_keys(id, &["sk-d1", "sk-d2", "sk-d3", "sk-d4", "sk-d5"])
        .await;
    let got = delete_text(&server, id, "sk-d1, sk-d2\nsk-missing sk-d1").await;
    assert_eq!(
        ok_data(got),
        json!({"deleted_count": 2, "ignored_count": 2, "total_in_group": 3})
    );
    let got = delete_text(&server, id, r#"["sk-d1"]"#).await;
    assert_eq!(
        ok_data(got),
        json!({"deleted_count": 0, "ignored_count": 1, "total_in_group": 3})
    );
    assert_eq!(
        sorted(key_values(&server, id, "").await),
        ["sk-d3", "sk-d4", "sk-d5"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_3_key_endpoints_reject_bad_input() {
    let server = Server::start().await;
    let id = server
        .create_group("strict", "openai", "https://api.example.com", json!({}))
        .await;
    for path in ["/api/keys/add-multiple", "/api/keys/delete-multiple"] {
        for text in ["", "  \n , ; \t"] {
            let got = server
                .api(
                    "POST",
                    path,
                    Some(json!({"group_id": id, "keys_text": text})),
                )
                .await;
            assert_eq!(got.0, 400, "{path} with keys_text {text:?}: {}", got.1);
        }
        let got = server
            .api("POST", path, Some(json!({"keys_text": "sk-x"})))
            .await;
        assert_eq!(got.0, 400, "{path} without group_id: {}", got.1);
        let got = server
            .api(
                "POST",
                path,
                Some(json!({"group_id": 99999, "keys_text": "sk-x"})),
            )
            .await;
        assert_error(&got, 404, "NOT_FOUND");
        assert_healthy(&server).await;
    }
    for query in ["", "?group_id=", "?group_id=abc"] {
        let got = server.api("GET", &format!("/api/keys{query}"), None).await;
        assert_eq!(got.0, 400, "GET /api/keys{query}: {}", got.1);
    }
    let got = server.api("GET", "/api/keys?group_id=99999", None).await;
    assert_error(&got, 404, "NOT_FOUND");

    // At most 5000 keys per synchronous call.
    let too_many: Vec<String> = (0..5001).map(|i| format!("sk-bulk-{i}")).collect();
    let got = add_text(&server, id, &too_many.join("\n")).await;
    assert_error(&got, 400, "VALIDATION_FAILED");
    let got = delete_text(&server, id, &too_many.join("\n")).await;
    assert_error(&got, 400, "VALIDATION_FAILED");
    let data = ok_data(
        server
            .api("GET", &format!("/api/keys?group_id={id}"), None)
            .await,
    );
    assert_eq!(data["pagination"]["total_items"], 0, "nothing was added");
    let got = add_text(&server, id, &too_many[..5000].join(",")).await;
    assert_eq!(
        ok_data(got),
        json!({"added_count": 5000, "ignored_count": 0, "total_in_group": 5000})
    );
    assert_healthy(&server).await;
}

// ---- §5.2 settings --------------------------------------------------------------------------

/// Every setting by key, from `GET /api/settings`.
async fn settings(server: &Server) -> BTreeMap<String, Value> {
    let data = ok_data(server.api("GET", "/api/settings", None).await);
    data.as_array()
        .expect("categories")
        .iter()
        .flat_map(|c| c["settings"].as_array().expect("settings").iter())
        .map(|s| (s["key"].as_str().expect("key").to_string(), s.clone()))
        .collect()
}

async fn put_settings(server: &Server, body: Value) -> (u16, Value) {
    server.api("PUT", "/api/settings", Some(body)).await
}

#[tokio::test(flavor = "multi_thread")]
async fn s5_2_settings_list_three_categories_with_v1_defaults() {
    let server = Server::start().await;
    let data = ok_data(server.api("GET", "/api/settings", None).await);
    let categories: Vec<&str> = data
        .as_array()
        .expect("array")
        .iter()
        .map(|c| c["category_name"].as_str().expect("category_name"))
        .collect();
    // No Accept-Language: zh-CN, as v1 (tests/groups_api.rs covers the three languages).
    assert_eq!(categories, ["基础参数", "请求设置", "密钥配置"]);
    let in_category = |key: &str| -> &str {
        data.as_array()
            .unwrap()
            .iter()
            .find(|c| {
                c["settings"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|s| s["key"] == key)
            })
            .and_then(|c| c["category_name"].as_str())
            .unwrap_or("none")
    };
    assert_eq!(in_category("app_url"), "基础参数");
    assert_eq!(in_category("proxy_keys"), "基础参数");
    assert_eq!(in_category("request_timeout"), "请求设置");
    assert_eq!(in_category("max_retries"), "密钥配置");

    let all = settings(&server).await;
    let expected: BTreeMap<&str, (&str, Value)> = [
        (
            "app_url",
            ("string", json!(format!("http://127.0.0.1:{}", server.port))),
        ),
        ("proxy_keys", ("string", json!(AUTH_KEY))),
        ("request_log_retention_days", ("int", json!(7))),
        ("request_log_write_interval_minutes", ("int", json!(1))),
        ("enable_request_body_logging", ("bool", json!(false))),
        ("request_timeout", ("int", json!(600))),
        ("connect_timeout", ("int", json!(15))),
        ("idle_conn_timeout", ("int", json!(120))),
        ("response_header_timeout", ("int", json!(600))),
        // Ours: v1 has no bound on a stalled stream.
        ("stream_idle_timeout", ("int", json!(300))),
        ("max_idle_conns", ("int", json!(100))),
        ("max_idle_conns_per_host", ("int", json!(50))),
        ("proxy_url", ("string", json!(""))),
        ("max_retries", ("int", json!(3))),
        ("blacklist_threshold", ("int", json!(3))),
        (
            "failover_status_codes",
            ("string", json!("400-403,405-999")),
        ),
        ("key_validation_interval_minutes", ("int", json!(60))),
        ("key_validation_concurrency", ("int", json!(10))),
        ("key_validation_timeout_seconds", ("int", json!(20))),
    ]
    .into_iter()
    .collect();
    let keys: BTreeSet<&str> = all.keys().map(String::as_str).collect();
    assert_eq!(keys, expected.keys().copied().collect());
    for (key, (kind, value)) in &expected {
        let s = &all[*key];
        for field in [
            "key",
            "name",
            "value",
            "type",
            "default_value",
            "description",
            "required",
        ] {
            assert!(s.get(field).is_some(), "{key} lacks '{field}': {s}");
        }
        assert!(
            s["name"].as_str().is_some_and(|n| !n.is_empty()),
            "{key}: {s}"
        );
        assert!(s["required"].is_boolean(), "{key}: {s}");
        assert_eq!(s["type"], *kind, "{key}");
        assert_eq!(s["value"], *value, "{key}");
        if *kind == "int" {
            assert_eq!(
                s["default_value"], *value,
                "{key}: fresh value is the default"
            );
            assert!(s["min_value"].is_i64(), "{key} has no min_value: {s}");
        }
    }
    assert_eq!(all["max_retries"]["min_value"], 0);
    assert_eq!(all["request_timeout"]["min_value"], 1);
    assert_eq!(
        all["failover_status_codes"]["default_value"],
        "400-403,405-999"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn s5_2_settings_update_rejects_bad_values_and_changes_nothing() {
    let server = Server::start().await;
    let before = ok_data(server.api("GET", "/api/settings", None).await);
    let cases = [
        json!({"no_such_setting": 1}),
        json!({"max_retries": -1}),
        json!({"request_timeout": 0}),
        json!({"key_validation_concurrency": 0}),
        json!({"max_retries": 1.5}),
        json!({"max_retries": "3"}),
        json!({"enable_request_body_logging": "yes"}),
        json!({"app_url": 5}),
        json!({"app_url": ""}),
        json!({"proxy_keys": " , "}),
        json!({"failover_status_codes": "abc"}),
        json!({"failover_status_codes": "99"}),
        json!({"failover_status_codes": "500-400"}),
        json!({"failover_status_codes": "1000"}),
        // One bad value fails the whole update: the good one is not stored either.
        json!({"max_retries": 5, "blacklist_threshold": -2}),
        json!({"blacklist_threshold": 9, "unknown_key": true}),
    ];
    for body in cases {
        let got = put_settings(&server, body.clone()).await;
        assert_eq!(got.0, 400, "{body}: {}", got.1);
        assert_error(&got, 400, "VALIDATION_FAILED");
        let now = ok_data(server.api("GET", "/api/settings", None).await);
        assert_eq!(now, before, "{body} changed the settings");
    }
    assert_healthy(&server).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn s5_2_settings_update_persists_across_a_restart() {
    let mut first = Server::start().await;
    let update = json!({
        "max_retries": 5,
        "failover_status_codes": "429,500-599",
        "proxy_keys": " pk-one , pk-two ,",
        "enable_request_body_logging": true,
        "request_timeout": 30,
        "proxy_url": "",
    });
    ok_data(put_settings(&first, update).await);
    let check = |all: BTreeMap<String, Value>| {
        assert_eq!(all["max_retries"]["value"], 5);
        assert_eq!(all["failover_status_codes"]["value"], "429,500-599");
        assert_eq!(all["proxy_keys"]["value"], "pk-one,pk-two", "normalised");
        assert_eq!(all["enable_request_body_logging"]["value"], true);
        assert_eq!(all["request_timeout"]["value"], 30);
        assert_eq!(all["blacklist_threshold"]["value"], 3, "untouched");
    };
    check(settings(&first).await);
    assert!(first.stop().await.success());
    let stored: String = first
        .db()
        .query_row(
            "SELECT setting_value FROM system_settings WHERE setting_key = 'max_retries'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stored, "5");

    let second = Server::start_in(&first.dir, &[]).await;
    // Seeding on start must not put AUTH_KEY back into proxy_keys.
    check(settings(&second).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn s5_4_proxy_keys_change_applies_to_the_next_request() {
    let mock = MockUpstream::start().await;
    let server = Server::start().await;
    // No group keys: only the global proxy_keys (seeded with AUTH_KEY) admit clients.
    let id = server
        .create_group(
            "global-only",
            "openai",
            &mock.url(),
            json!({"proxy_keys": ""}),
        )
        .await;
    server.add_keys(id, &["sk-upstream-global"]).await;
    let path = chat_path("global-only");
    let resp = server.proxy_post_as(AUTH_KEY, &path, chat()).await;
    assert_eq!(
        resp.status(),
        200,
        "AUTH_KEY is the seeded global proxy key"
    );
    let resp = server.proxy_post_as(PROXY_KEY, &path, chat()).await;
    assert_eq!(resp.status(), 401);

    let new_key = "sk-global-client-Rt7yU2";
    ok_data(put_settings(&server, json!({"proxy_keys": new_key})).await);
    let resp = server.proxy_post_as(new_key, &path, chat()).await;
    assert_eq!(resp.status(), 200, "the new key works at once");
    let resp = server.proxy_post_as(AUTH_KEY, &path, chat()).await;
    assert_eq!(resp.status(), 401, "the old key is refused at once");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "UNAUTHORIZED");
    assert_eq!(
        mock.request_count(),
        2,
        "refused requests never reach the upstream"
    );
    server.assert_logs_free_of(&[AUTH_KEY, new_key, "sk-upstream-global"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn s5_4_max_retries_change_applies_to_the_next_request() {
    let mock = MockUpstream::start().await;
    let server = Server::start().await;
    let broken = "sk-always-fails-500";
    mock.fail_key(broken, 500, r#"{"error":{"message":"upstream exploded"}}"#);
    // Never blacklist, so every attempt reuses the one key.
    let id = server
        .create_group(
            "retrying",
            "openai",
            &mock.url(),
            json!({"config": {"blacklist_threshold": 0}}),
        )
        .await;
    server.add_keys(id, &[broken]).await;
    let path = chat_path("retrying");
    let attempts = |expected: usize| {
        let mock = &mock;
        let server = &server;
        let path = &path;
        async move {
            mock.clear();
            let resp = server.proxy_post(path, chat()).await;
            assert_eq!(resp.status(), 500);
            let body: Value = resp.json().await.unwrap();
            assert_eq!(
                body["error"]["message"], "upstream exploded",
                "upstream body verbatim"
            );
            assert_eq!(mock.request_count(), expected, "upstream attempts");
        }
    };
    attempts(4).await; // v1's default max_retries = 3
    ok_data(put_settings(&server, json!({"max_retries": 1})).await);
    attempts(2).await;
    // A group override wins over the system value.
    let group_config = json!({"config": {"blacklist_threshold": 0, "max_retries": 0}});
    ok_data(
        server
            .api("PUT", &format!("/api/groups/{id}"), Some(group_config))
            .await,
    );
    attempts(1).await;
    let group_config = json!({"config": {"blacklist_threshold": 0}});
    ok_data(
        server
            .api("PUT", &format!("/api/groups/{id}"), Some(group_config))
            .await,
    );
    attempts(2).await;
    server.assert_logs_free_of(&[AUTH_KEY, broken]);
}

// ---- §5.4 hot reload ------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn s5_4_group_and_key_changes_apply_to_the_next_request() {
    let mock = MockUpstream::start().await;
    let second_mock = MockUpstream::start().await;
    let server = Server::start().await;
    let id = server
        .create_group("hot", "openai", &mock.url(), json!({}))
        .await;
    let path = chat_path("hot");

    let resp = server.proxy_post(&path, chat()).await;
    assert_eq!(resp.status(), 503, "a group without keys");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "NO_KEYS_AVAILABLE");

    server.add_keys(id, &["sk-hot-1"]).await;
    let resp = server.proxy_post(&path, chat()).await;
    assert_eq!(
        resp.status(),
        200,
        "the new key serves the very next request"
    );
    tokio::time::timeout(MOCK_TIMEOUT, mock.wait_requests(1))
        .await
        .unwrap();
    assert_eq!(upstream_keys(&mock), ["sk-hot-1"]);

    server.add_keys(id, &["sk-hot-2"]).await;
    let got = delete_text(&server, id, "sk-hot-1").await;
    assert_eq!(ok_data(got)["deleted_count"], 1);
    mock.clear();
    for _ in 0..4 {
        let resp = server.proxy_post(&path, chat()).await;
        assert_eq!(resp.status(), 200);
    }
    assert_eq!(
        upstream_keys(&mock),
        ["sk-hot-2"; 4],
        "a deleted key is never used again"
    );

    let got = delete_text(&server, id, "sk-hot-2").await;
    assert_eq!(ok_data(got)["total_in_group"], 0);
    let resp = server.proxy_post(&path, chat()).await;
    assert_eq!(resp.status(), 503, "no keys left");

    server.add_keys(id, &["sk-hot-3"]).await;
    let moved = json!({"upstreams": [{"url": second_mock.url(), "weight": 1}]});
    ok_data(
        server
            .api("PUT", &format!("/api/groups/{id}"), Some(moved))
            .await,
    );
    mock.clear();
    let resp = server.proxy_post(&path, chat()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        mock.request_count(),
        0,
        "the old upstream is no longer used"
    );
    assert_eq!(upstream_keys(&second_mock), ["sk-hot-3"]);

    let renamed = json!({"name": "hot-renamed", "proxy_keys": "gk-renamed"});
    ok_data(
        server
            .api("PUT", &format!("/api/groups/{id}"), Some(renamed))
            .await,
    );
    let resp = server.proxy_post_as("gk-renamed", &path, chat()).await;
    assert_eq!(resp.status(), 404, "the old name is gone");
    let new_path = chat_path("hot-renamed");
    let resp = server.proxy_post(&new_path, chat()).await;
    assert_eq!(resp.status(), 401, "the old group proxy key is gone");
    let resp = server.proxy_post_as("gk-renamed", &new_path, chat()).await;
    assert_eq!(resp.status(), 200);

    ok_data(
        server
            .api("DELETE", &format!("/api/groups/{id}"), None)
            .await,
    );
    let resp = server.proxy_post_as("gk-renamed", &new_path, chat()).await;
    assert_eq!(resp.status(), 404, "a deleted group is gone at once");
    server.assert_logs_free_of(&[AUTH_KEY, PROXY_KEY, "sk-hot-1", "sk-hot-2", "sk-hot-3"]);
}
