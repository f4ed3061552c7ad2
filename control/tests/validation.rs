//! Key validation end to end (spec §2.6, §2.15, §3.3): the real binary, the recording mock
//! upstream, and what each validation really sent upstream. Validation goes out through the
//! engine's upstream client, so header rules, custom endpoints and outbound proxies apply.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Server, eventually, within};
use mock_upstream::MockUpstream;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// `POST /api/keys/test-multiple`; the answer's `data`.
async fn test_keys(server: &Server, group_id: i64, keys: &[&str]) -> Value {
    let body = json!({"group_id": group_id, "keys_text": keys.join("\n")});
    let (status, resp) = server
        .api("POST", "/api/keys/test-multiple", Some(body))
        .await;
    assert_eq!(status, 200, "test-multiple: {resp}");
    resp["data"].clone()
}

/// A group with `keys` on `upstream`; `extra` is merged into the create body.
async fn group_with(
    server: &Server,
    name: &str,
    channel: &str,
    upstream: &str,
    keys: &[&str],
    extra: Value,
) -> i64 {
    let id = server.create_group(name, channel, upstream, extra).await;
    server.add_keys(id, keys).await;
    id
}

/// An admin call asking for English messages (the default is v1's zh-CN).
async fn api_en(server: &Server, method: &str, path: &str, body: Value) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let resp = server
        .client
        .request(method, server.url(path))
        .bearer_auth(common::AUTH_KEY)
        .header("accept-language", "en-US")
        .json(&body)
        .send()
        .await
        .expect("admin request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn task_status(server: &Server) -> Value {
    let (status, resp) = server.api("GET", "/api/tasks/status", None).await;
    assert_eq!(status, 200, "{resp}");
    resp["data"].clone()
}

// ---------------------------------------------------------------------------------------------
// §2.6: the validation request of each channel.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_channel_sends_v1s_validation_request() {
    let mock = MockUpstream::start().await;
    let server = Server::start().await;
    let base = format!("{}/base/", mock.url());
    let rules = json!({"header_rules": [
        {"key": "X-Trace", "value": "${CLIENT_IP}|${GROUP_NAME}|${API_KEY}", "action": "set"},
        {"key": "X-Drop", "action": "remove"},
    ]});
    let openai = group_with(&server, "oa", "openai", &base, &["sk-oa-1"], rules).await;
    let responses = group_with(
        &server,
        "or",
        "openai-response",
        &mock.url(),
        &["sk-or-1"],
        json!({}),
    )
    .await;
    let anthropic = group_with(
        &server,
        "an",
        "anthropic",
        &mock.url(),
        &["sk-an-1"],
        json!({}),
    )
    .await;
    let gemini_endpoint = json!({"validation_endpoint": "/ignored/for/gemini?x=1"});
    let gemini = group_with(
        &server,
        "ge",
        "gemini",
        &mock.url(),
        &["AIza-ge+1"],
        gemini_endpoint,
    )
    .await;
    let custom = json!({"validation_endpoint": "/v1/custom/chat/completions?api-version=2024-10"});
    let endpoint = group_with(&server, "cu", "openai", &mock.url(), &["sk-cu-1"], custom).await;

    for (id, key) in [
        (openai, "sk-oa-1"),
        (responses, "sk-or-1"),
        (anthropic, "sk-an-1"),
        (gemini, "AIza-ge+1"),
        (endpoint, "sk-cu-1"),
    ] {
        let data = test_keys(&server, id, &[key]).await;
        assert_eq!(data["results"][0]["is_valid"], true, "{key}: {data}");
        assert!(data["results"][0].get("error").is_none(), "{data}");
        assert!(data["total_duration"].is_u64(), "{data}");
    }
    let sent = mock.requests();
    assert_eq!(sent.len(), 5, "{sent:#?}");
    let hi = json!([{"role": "user", "content": "hi"}]);

    let oa = &sent[0];
    assert_eq!(oa.method, "POST");
    assert_eq!(oa.path, "/base/v1/chat/completions");
    assert_eq!(oa.header("authorization"), Some("Bearer sk-oa-1"));
    assert_eq!(oa.header("content-type"), Some("application/json"));
    assert_eq!(oa.header("x-trace"), Some("127.0.0.1|oa|sk-oa-1"));
    assert_eq!(oa.json(), json!({"model": "test-model", "messages": hi}));

    let or = &sent[1];
    assert_eq!(or.path, "/v1/responses");
    assert_eq!(or.header("authorization"), Some("Bearer sk-or-1"));
    assert_eq!(or.json(), json!({"model": "test-model", "input": "hi"}));

    let an = &sent[2];
    assert_eq!(an.path, "/v1/messages");
    assert_eq!(an.header("x-api-key"), Some("sk-an-1"));
    assert_eq!(an.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(an.header("authorization"), None);
    assert_eq!(
        an.json(),
        json!({"model": "test-model", "max_tokens": 100, "messages": hi})
    );

    let ge = &sent[3];
    assert_eq!(ge.path_only(), "/v1beta/models/test-model:generateContent");
    assert_eq!(ge.query("key").as_deref(), Some("AIza-ge+1"));
    assert_eq!(ge.query("x"), None, "gemini ignores validation_endpoint");
    assert_eq!(ge.header("authorization"), None);
    assert_eq!(
        ge.json(),
        json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})
    );

    let cu = &sent[4];
    assert_eq!(
        cu.path, "/v1/custom/chat/completions?api-version=2024-10",
        "the endpoint's query is kept"
    );
    assert_eq!(cu.header("authorization"), Some("Bearer sk-cu-1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_rules_can_move_the_key_and_a_model_override_is_used() {
    let mock = MockUpstream::start().await;
    let server = Server::start().await;
    // Azure style (spec §2.6): the key in `api-key`, no Authorization.
    let azure = json!({"header_rules": [
        {"key": "Api-Key", "value": "${API_KEY}", "action": "set"},
        {"key": "Authorization", "action": "remove"},
    ]});
    let id = group_with(&server, "az", "openai", &mock.url(), &["sk-az-1"], azure).await;
    let body = json!({"group_id": id, "keys_text": "sk-az-1", "model": "gpt-override"});
    let (status, resp) = server
        .api("POST", "/api/keys/test-multiple", Some(body))
        .await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["data"]["results"][0]["is_valid"], true, "{resp}");
    let sent = &mock.requests()[0];
    assert_eq!(sent.header("api-key"), Some("sk-az-1"));
    assert_eq!(sent.header("authorization"), None);
    assert_eq!(sent.json()["model"], "gpt-override");
}

// ---------------------------------------------------------------------------------------------
// §3.3 test-multiple: results and what they do to the keys.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_multiple_reports_each_key_and_updates_status_like_v1() {
    let mock = MockUpstream::start().await;
    let bad = "sk-test-bad-0123456789";
    let error = json!({"error": {"message": format!("Incorrect API key provided: {bad}")}});
    mock.fail_key(bad, 401, &error.to_string());
    let mut server = Server::start().await;
    let good = "sk-test-good-0123456789";
    let id = group_with(&server, "t", "openai", &mock.url(), &[good, bad], json!({})).await;

    let data = test_keys(&server, id, &[good, "sk-not-here", bad]).await;
    let results = data["results"].as_array().expect("results");
    assert_eq!(results.len(), 3, "{data}");
    assert_eq!(results[0], json!({"key_value": good, "is_valid": true}));
    assert_eq!(
        results[1],
        json!({"key_value": "sk-not-here", "is_valid": false,
               "error": "Key does not exist in this group or has been removed."})
    );
    assert_eq!(results[2]["is_valid"], false);
    assert_eq!(
        results[2]["error"], "[status 401] Incorrect API key provided: sk-t****6789",
        "v1's reason, the key masked"
    );
    assert_eq!(
        mock.request_count(),
        2,
        "keys not in the group are not sent"
    );

    // A failing active key gets one failure and stays active (threshold 3).
    let entry = server.key_entry(id, bad).await;
    assert_eq!(
        (entry["status"].clone(), entry["failure_count"].clone()),
        (json!("active"), json!(1))
    );
    let entry = server.key_entry(id, good).await;
    assert_eq!(entry["failure_count"], 0);

    // Input errors, in v1's words.
    let empty = json!({"group_id": id, "keys_text": " ,; "});
    let (status, resp) = api_en(&server, "POST", "/api/keys/test-multiple", empty).await;
    assert_eq!(
        (status, resp["code"].clone()),
        (400, json!("VALIDATION_FAILED")),
        "{resp}"
    );
    assert_eq!(resp["message"], "no valid keys found in the input text");
    let many: Vec<String> = (0..5001).map(|i| format!("k{i}")).collect();
    let body = json!({"group_id": id, "keys_text": many.join(",")});
    let (status, resp) = api_en(&server, "POST", "/api/keys/test-multiple", body).await;
    assert_eq!(status, 400, "{resp}");
    assert_eq!(
        resp["message"],
        "batch size exceeds the limit of 5000 keys, got 5001"
    );
    let body = json!({"group_id": 9999, "keys_text": good});
    let (status, _) = server
        .api("POST", "/api/keys/test-multiple", Some(body))
        .await;
    assert_eq!(status, 404);

    server.stop().await;
    let failures: i64 = server
        .db()
        .query_row(
            "SELECT failure_count FROM api_keys WHERE key_value = ?1",
            [bad],
            |row| row.get(0),
        )
        .expect("row");
    assert_eq!(failures, 1, "the failure is stored");
    server.assert_logs_free_of(&[bad]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_key_that_validates_is_restored_and_served_at_once() {
    let mock = MockUpstream::start().await;
    let key = "sk-restore-me-0123456789";
    mock.fail_key(key, 401, r#"{"error":{"message":"revoked"}}"#);
    let mut server = Server::start().await;
    let config = json!({"config": {"blacklist_threshold": 1}});
    let id = group_with(&server, "r", "openai", &mock.url(), &[key], config).await;

    // One counted failure at threshold 1 blacklists it: the group has no key left.
    let data = test_keys(&server, id, &[key]).await;
    assert_eq!(data["results"][0]["error"], "[status 401] revoked");
    let entry = server.key_entry(id, key).await;
    assert_eq!(
        (entry["status"].clone(), entry["failure_count"].clone()),
        (json!("invalid"), json!(1))
    );
    let chat = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    let resp = server
        .proxy_post("/proxy/r/v1/chat/completions", chat.clone())
        .await;
    assert_eq!(resp.status(), 503, "no active key");

    // A failing invalid key stays as it is.
    test_keys(&server, id, &[key]).await;
    assert_eq!(server.key_entry(id, key).await["failure_count"], 1);

    mock.heal_key(key);
    let data = test_keys(&server, id, &[key]).await;
    assert_eq!(data["results"][0]["is_valid"], true, "{data}");
    let entry = server.key_entry(id, key).await;
    assert_eq!(
        (entry["status"].clone(), entry["failure_count"].clone()),
        (json!("active"), json!(0))
    );
    mock.clear();
    let resp = server
        .proxy_post("/proxy/r/v1/chat/completions", chat)
        .await;
    assert_eq!(
        resp.status(),
        200,
        "the restored key serves the next request"
    );
    assert_eq!(mock.requests()[0].upstream_key().as_deref(), Some(key));

    server.stop().await;
    let (status, failures): (String, i64) = server
        .db()
        .query_row(
            "SELECT status, failure_count FROM api_keys WHERE key_value = ?1",
            [key],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .expect("row");
    assert_eq!((status.as_str(), failures), ("active", 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upstream_is_cut_at_key_validation_timeout_seconds() {
    let mock = MockUpstream::start().await;
    let server = Server::start().await;
    let extra = json!({
        "config": {"key_validation_timeout_seconds": 1},
        "header_rules": [{"key": "X-Mock-Delay-Ms", "value": "5000", "action": "set"}],
    });
    let id = group_with(
        &server,
        "slow",
        "openai",
        &mock.url(),
        &["sk-slow-1"],
        extra,
    )
    .await;
    let started = std::time::Instant::now();
    let data = test_keys(&server, id, &["sk-slow-1"]).await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(data["results"][0]["is_valid"], false);
    let error = data["results"][0]["error"].as_str().expect("error");
    assert!(error.contains("key_validation_timeout_seconds"), "{error}");
    assert_eq!(server.key_entry(id, "sk-slow-1").await["failure_count"], 1);
}

// ---------------------------------------------------------------------------------------------
// §3.3 validate-group: the background task.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_group_runs_as_a_task_with_a_status_filter() {
    let mock = MockUpstream::start().await;
    let server = Server::start().await;
    let (ok_a, ok_b, bad) = ("sk-vg-ok-a-000", "sk-vg-ok-b-000", "sk-vg-bad-000");
    mock.fail_key(bad, 401, r#"{"error":{"message":"nope"}}"#);
    // Every validation waits at the mock until the gate opens: the task is seen running.
    let gate = json!({
        "config": {"key_validation_concurrency": 2},
        "header_rules": [{"key": "X-Mock-Gate", "value": "vg", "action": "set"}],
    });
    let id = group_with(
        &server,
        "vg",
        "openai",
        &mock.url(),
        &[ok_a, ok_b, bad],
        gate,
    )
    .await;

    let (status, resp) = server
        .api(
            "POST",
            "/api/keys/validate-group",
            Some(json!({"group_id": id})),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["data"]["task_type"], "KEY_VALIDATION");
    assert_eq!(resp["data"]["is_running"], true);
    assert_eq!(resp["data"]["group_name"], "vg");
    assert_eq!(resp["data"]["total"], 3);
    within("two held validations", mock.wait_requests(2)).await;
    let running = task_status(&server).await;
    assert_eq!(
        (running["is_running"].clone(), running["processed"].clone()),
        (json!(true), json!(0))
    );

    let again = json!({"group_id": id, "status": "active"});
    let (status, resp) = server
        .api("POST", "/api/keys/validate-group", Some(again))
        .await;
    assert_eq!(
        (status, resp["code"].clone()),
        (409, json!("TASK_IN_PROGRESS")),
        "{resp}"
    );

    mock.open_gate("vg");
    eventually("the task to finish", || async {
        task_status(&server).await["is_running"] == false
    })
    .await;
    let done = task_status(&server).await;
    assert_eq!(done["processed"], 3, "{done}");
    assert_eq!(
        done["result"],
        json!({"total_keys": 3, "valid_keys": 2, "invalid_keys": 1})
    );
    assert!(done["finished_at"].is_string(), "{done}");
    assert_eq!(server.key_entry(id, bad).await["failure_count"], 1);

    // Only invalid keys: none yet, which v1 answers with 409.
    let invalid = json!({"group_id": id, "status": "invalid"});
    let (status, resp) = api_en(&server, "POST", "/api/keys/validate-group", invalid.clone()).await;
    assert_eq!(status, 409, "{resp}");
    assert_eq!(resp["message"], "no keys to validate in group vg");

    // Blacklist the bad key (two more failures reach the threshold of 3), then validate only
    // the invalid ones: nothing else is sent.
    test_keys(&server, id, &[bad, bad]).await;
    test_keys(&server, id, &[bad]).await;
    assert_eq!(server.key_entry(id, bad).await["status"], "invalid");
    mock.clear();
    let (status, resp) = server
        .api("POST", "/api/keys/validate-group", Some(invalid))
        .await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["data"]["total"], 1);
    eventually("the second task to finish", || async {
        task_status(&server).await["is_running"] == false
    })
    .await;
    let keys: Vec<String> = mock
        .requests()
        .iter()
        .filter_map(|r| r.upstream_key())
        .collect();
    assert_eq!(keys, [bad]);
    assert_eq!(
        task_status(&server).await["result"],
        json!({"total_keys": 1, "valid_keys": 0, "invalid_keys": 1})
    );

    let bogus = json!({"group_id": id, "status": "weird"});
    let (status, resp) = server
        .api("POST", "/api/keys/validate-group", Some(bogus))
        .await;
    assert_eq!(
        (status, resp["code"].clone()),
        (400, json!("VALIDATION_FAILED")),
        "{resp}"
    );
    let missing = json!({"group_id": 424242});
    let (status, _) = server
        .api("POST", "/api/keys/validate-group", Some(missing))
        .await;
    assert_eq!(status, 404);
}

// ---------------------------------------------------------------------------------------------
// §2.15 the periodic re-check of invalid keys.

fn invalidate_in_db(db: &rusqlite::Connection, keys: &[&str]) {
    for key in keys {
        let changed = db
            .execute(
                "UPDATE api_keys SET status = 'invalid', failure_count = 3 WHERE key_value = ?1",
                [key],
            )
            .expect("invalidate");
        assert_eq!(changed, 1, "{key}");
    }
}

fn last_validated_at(db: &rusqlite::Connection, group_id: i64) -> Option<String> {
    db.query_row(
        "SELECT last_validated_at FROM groups WHERE id = ?1",
        [group_id],
        |row| row.get(0),
    )
    .expect("group row")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_start_pass_restores_invalid_keys_of_groups_never_checked() {
    let mock = MockUpstream::start().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let (healed, dead, active) = (
        "sk-cron-healed-000",
        "sk-cron-dead-000",
        "sk-cron-active-000",
    );
    let mut server = Server::start_in(tmp.path(), &[]).await;
    let id = group_with(
        &server,
        "cron",
        "openai",
        &mock.url(),
        &[healed, dead, active],
        json!({}),
    )
    .await;
    server.stop().await;
    {
        let db = server.db();
        invalidate_in_db(&db, &[healed, dead]);
        db.execute("UPDATE groups SET last_validated_at = NULL", [])
            .expect("reset");
    }
    mock.fail_key(dead, 401, r#"{"error":{"message":"still dead"}}"#);

    let mut server = Server::start_in(tmp.path(), &[]).await;
    eventually("the healed key to be restored", || async {
        server.key_entry(id, healed).await["status"] == "active"
    })
    .await;
    server.wait_for_log("invalid keys re-checked").await;
    let entry = server.key_entry(id, healed).await;
    assert_eq!(entry["failure_count"], 0);
    let entry = server.key_entry(id, dead).await;
    assert_eq!(
        (entry["status"].clone(), entry["failure_count"].clone()),
        (json!("invalid"), json!(3))
    );
    let mut sent: Vec<String> = mock
        .requests()
        .iter()
        .filter_map(|r| r.upstream_key())
        .collect();
    sent.sort();
    assert_eq!(sent, [dead, healed], "only invalid keys are re-checked");
    let chat = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    for _ in 0..2 {
        let resp = server
            .proxy_post("/proxy/cron/v1/chat/completions", chat.clone())
            .await;
        assert_eq!(resp.status(), 200);
    }
    server.stop().await;
    let db = server.db();
    assert!(last_validated_at(&db, id).is_some(), "the pass is stamped");
    let status: String = db
        .query_row(
            "SELECT status FROM api_keys WHERE key_value = ?1",
            [healed],
            |r| r.get(0),
        )
        .expect("row");
    assert_eq!(status, "active");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recheck_runs_every_tick_for_groups_that_are_due() {
    let mock = MockUpstream::start().await;
    let key = "sk-tick-000111222";
    mock.fail_key(key, 401, r#"{"error":{"message":"down"}}"#);
    let server = Server::start_with(&[("KEY_VALIDATION_TICK_SECONDS", "1")]).await;
    let config = json!({"config": {"blacklist_threshold": 1}});
    let id = group_with(&server, "tick", "openai", &mock.url(), &[key], config).await;
    test_keys(&server, id, &[key]).await;
    assert_eq!(server.key_entry(id, key).await["status"], "invalid");
    // The group may have been stamped already (it had no invalid key then): make it due.
    mock.heal_key(key);
    {
        let db = server.db();
        db.busy_timeout(Duration::from_secs(5))
            .expect("busy timeout");
        db.execute(
            "UPDATE groups SET last_validated_at = NULL WHERE id = ?1",
            [id],
        )
        .expect("reset");
    }
    eventually("the next tick to restore the key", || async {
        server.key_entry(id, key).await["status"] == "active"
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// The bridge: internal, and through the group's proxy.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_internal_route_is_a_plain_404_without_the_secret() {
    let mock = MockUpstream::start().await;
    let server = Server::start().await;
    let id = group_with(
        &server,
        "in",
        "openai",
        &mock.url(),
        &["sk-in-1"],
        json!({}),
    )
    .await;
    let body = json!({"group_id": id, "key": "sk-in-1", "timeout_ms": 5000});
    for secret in [None, Some(""), Some("guess"), Some(common::AUTH_KEY)] {
        let mut request = server
            .client
            .post(server.url("/__gpt_load/validate"))
            .json(&body);
        if let Some(secret) = secret {
            request = request.header("X-Gpt-Load-Internal", secret);
        }
        let resp = request.send().await.expect("request");
        assert_eq!(resp.status(), 404, "secret {secret:?}");
        assert_eq!(resp.text().await.expect("body"), r#"{"error":"Not Found"}"#);
    }
    assert_eq!(mock.request_count(), 0, "nothing was sent upstream");
}

/// A plain HTTP proxy that records each request line and relays absolute-form requests.
struct RecordingProxy {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
}

impl RecordingProxy {
    async fn start() -> RecordingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(relay(stream, log.clone()));
            }
        });
        RecordingProxy { port, seen }
    }
}

/// Relays one absolute-form request per connection (`Connection: close` both ways).
async fn relay(stream: TcpStream, seen: Arc<Mutex<Vec<String>>>) -> Option<()> {
    let mut client = BufReader::new(stream);
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        client.read_line(&mut line).await.ok()?;
        let line = line.trim_end().to_string();
        if line.is_empty() {
            break;
        }
        head.push(line);
    }
    seen.lock().unwrap().push(head[0].clone());
    let target = head[0]
        .split(' ')
        .nth(1)?
        .strip_prefix("http://")?
        .to_string();
    let (authority, path) = target.split_at(target.find('/')?);
    let length: usize = head
        .iter()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap_or(0))
        })
        .unwrap_or(0);
    let mut body = vec![0; length];
    client.read_exact(&mut body).await.ok()?;
    let method = head[0].split(' ').next()?;
    let mut request = format!("{method} {path} HTTP/1.1\r\n");
    for line in head.iter().skip(1) {
        let name = line
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if name != "connection" && !name.starts_with("proxy-") {
            request.push_str(line);
            request.push_str("\r\n");
        }
    }
    request.push_str("Connection: close\r\n\r\n");
    let mut upstream = TcpStream::connect(authority).await.ok()?;
    upstream.write_all(request.as_bytes()).await.ok()?;
    upstream.write_all(&body).await.ok()?;
    let mut response = Vec::new();
    upstream.read_to_end(&mut response).await.ok()?;
    client.write_all(&response).await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_goes_through_the_groups_outbound_proxy() {
    let mock = MockUpstream::start().await;
    let proxy = RecordingProxy::start().await;
    let server = Server::start().await;
    let via_proxy = json!({"config": {"proxy_url": format!("http://127.0.0.1:{}", proxy.port)}});
    let id = group_with(
        &server,
        "px",
        "openai",
        &mock.url(),
        &["sk-px-1"],
        via_proxy,
    )
    .await;

    let data = test_keys(&server, id, &["sk-px-1"]).await;
    assert_eq!(data["results"][0]["is_valid"], true, "{data}");
    let seen = proxy.seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [format!("POST {}/v1/chat/completions HTTP/1.1", mock.url())]
    );
    assert_eq!(
        mock.requests()[0].upstream_key().as_deref(),
        Some("sk-px-1")
    );

    // A proxy that is down fails the validation with the transport error, counted as v1 does.
    let closed = common::free_port();
    let dead = json!({"config": {"proxy_url": format!("http://127.0.0.1:{closed}")}});
    let id = group_with(
        &server,
        "px-dead",
        "openai",
        &mock.url(),
        &["sk-px-2"],
        dead,
    )
    .await;
    let data = test_keys(&server, id, &["sk-px-2"]).await;
    assert_eq!(data["results"][0]["is_valid"], false);
    let error = data["results"][0]["error"].as_str().expect("error");
    assert!(
        error.starts_with("failed to send validation request: "),
        "{error}"
    );
    assert!(
        error.contains(&closed.to_string()),
        "names the proxy: {error}"
    );
    assert_eq!(server.key_entry(id, "sk-px-2").await["failure_count"], 1);
    assert_eq!(mock.request_count(), 1, "nothing reached the upstream");
}
