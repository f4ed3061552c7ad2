//! The key endpoints beyond list/add/delete (spec §3.3, console spec §5), against the real
//! binary: background import and delete with the task status the console polls, the export
//! download, restore, clear, notes. Every change must be visible to the very next proxy request.

mod common;

use std::time::{Duration, Instant};

use common::{AUTH_KEY, Server, chat, chat_path, eventually};
use mock_upstream::MockUpstream;
use serde_json::{Value, json};

/// Bound on waiting for a background task; a failure, not a sleep.
const TASK_TIMEOUT: Duration = Duration::from_secs(120);

async fn assert_healthy(server: &Server) {
    let resp = server
        .client
        .get(server.url("/health"))
        .send()
        .await
        .expect("health request");
    assert_eq!(resp.status(), 200, "the server stopped serving");
}

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

#[track_caller]
fn ok_data(got: (u16, Value)) -> Value {
    assert_eq!(got.0, 200, "{}", got.1);
    assert_eq!(got.1["code"], 0, "{}", got.1);
    got.1["data"].clone()
}

/// Polls `/api/tasks/status` every few milliseconds until the task has finished; returns the
/// finished status.
async fn finished_task(server: &Server) -> Value {
    let deadline = Instant::now() + TASK_TIMEOUT;
    loop {
        let status = ok_data(server.api("GET", "/api/tasks/status", None).await);
        if status["is_running"] == false && status["finished_at"].is_string() {
            return status;
        }
        assert!(Instant::now() < deadline, "task still running: {status}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The TaskStatus fields v1 sends and the console reads, while running and after.
#[track_caller]
fn assert_task_shape(status: &Value, task_type: &str, group: &str) {
    assert_eq!(status["task_type"], task_type, "{status}");
    assert_eq!(status["group_name"], group, "{status}");
    assert!(status["is_running"].is_boolean(), "{status}");
    assert!(status["processed"].is_u64(), "{status}");
    assert!(status["total"].is_u64(), "{status}");
    assert!(status["started_at"].is_string(), "{status}");
    assert!(status["duration_seconds"].is_number(), "{status}");
    assert!(
        status["processed"].as_u64() <= status["total"].as_u64(),
        "{status}"
    );
}

async fn post_keys(server: &Server, path: &str, group_id: i64, text: &str) -> (u16, Value) {
    let body = json!({"group_id": group_id, "keys_text": text});
    server.api("POST", path, Some(body)).await
}

/// A multipart form body with a boundary of our own; parts are (name, filename, content).
fn form(parts: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "----gpt-load-test-7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for (name, filename, content) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        let disposition = match filename {
            Some(f) => format!("form-data; name=\"{name}\"; filename=\"{f}\""),
            None => format!("form-data; name=\"{name}\""),
        };
        body.extend_from_slice(format!("Content-Disposition: {disposition}\r\n").as_bytes());
        if filename.is_some() {
            body.extend_from_slice(b"Content-Type: text/plain\r\n");
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn upload(server: &Server, content_type: &str, body: Vec<u8>) -> (u16, Value) {
    let resp = server
        .client
        .post(server.url("/api/keys/add-async"))
        .bearer_auth(AUTH_KEY)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("upload");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("upload body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The listed key values of a group, sorted (one page of up to 1000).
async fn key_values(server: &Server, group_id: i64, query: &str) -> Vec<String> {
    let path = format!("/api/keys?group_id={group_id}&page_size=1000{query}");
    let data = ok_data(server.api("GET", &path, None).await);
    let mut values: Vec<String> = data["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|k| k["key_value"].as_str().expect("key_value").to_string())
        .collect();
    values.sort();
    values
}

/// Sends one chat request through the group; returns its status and the upstream key used.
async fn proxied_key(server: &Server, mock: &MockUpstream, group: &str) -> (u16, Option<String>) {
    mock.clear();
    let resp = server.proxy_post(&chat_path(group), chat()).await;
    let status = resp.status().as_u16();
    resp.bytes().await.expect("proxy body");
    let key = mock.requests().last().and_then(|r| r.upstream_key());
    (status, key)
}

/// A group whose keys turn invalid at their first failure and are never retried.
async fn strict_group(server: &Server, mock: &MockUpstream, name: &str) -> i64 {
    let config = json!({"config": {"blacklist_threshold": 1, "max_retries": 0}});
    server
        .create_group(name, "openai", &mock.url(), config)
        .await
}

/// Makes `key` (the group's only active key) invalid through a failing proxied request.
async fn blacklist(server: &Server, mock: &MockUpstream, group: &str, key: &str) {
    mock.fail_key(key, 401, r#"{"error":{"message":"revoked"}}"#);
    let (status, used) = proxied_key(server, mock, group).await;
    assert_eq!((status, used.as_deref()), (401, Some(key)));
    mock.heal_key(key);
}

// ---- add-async ------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn add_async_imports_json_text_as_a_background_task() {
    let mock = MockUpstream::start().await;
    let server = Server::start().await;
    let id = strict_group(&server, &mock, "imported").await;
    server.add_keys(id, &["sk-old-1"]).await;
    blacklist(&server, &mock, "imported", "sk-old-1").await;

    let text = "sk-new-1, sk-new-2;sk-new-3\nsk-old-1 sk-new-2\n";
    let started = ok_data(post_keys(&server, "/api/keys/add-async", id, text).await);
    assert_task_shape(&started, "KEY_IMPORT", "imported");
    assert_eq!(started["is_running"], true);
    assert_eq!(started["total"], 5);

    let done = finished_task(&server).await;
    assert_task_shape(&done, "KEY_IMPORT", "imported");
    assert_eq!(
        done["result"],
        json!({"added_count": 3, "ignored_count": 2})
    );
    assert_eq!(
        (done["processed"].clone(), done["total"].clone()),
        (json!(5), json!(5))
    );
    assert!(done["finished_at"].is_string());
    assert_eq!(
        key_values(&server, id, "").await,
        ["sk-new-1", "sk-new-2", "sk-new-3", "sk-old-1"]
    );
    // The finished record stays for the console's next poll.
    let again = ok_data(server.api("GET", "/api/tasks/status", None).await);
    assert_eq!(again["finished_at"], done["finished_at"]);

    // The proxy uses the imported keys at once (the old key was blacklisted before).
    let mut used = std::collections::BTreeSet::new();
    for _ in 0..12 {
        let (status, key) = proxied_key(&server, &mock, "imported").await;
        assert_eq!(status, 200);
        used.insert(key.expect("upstream key"));
        if used.len() == 3 {
            break;
        }
    }
    assert_eq!(
        used.into_iter().collect::<Vec<_>>(),
        ["sk-new-1", "sk-new-2", "sk-new-3"]
    );
    assert_healthy(&server).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn add_async_takes_a_txt_upload_and_refuses_other_files() {
    let mock = MockUpstream::start().await;
    let server = Server::start().await;
    let id = strict_group(&server, &mock, "uploaded").await;
    let group = id.to_string();

    let keys = b"sk-file-1\r\nsk-file-2\r\n\r\nsk-file-3, sk-file-1\r\n";
    let (ct, body) = form(&[
        ("group_id", None, group.as_bytes()),
        ("file", Some("keys.TXT"), keys),
    ]);
    let started = ok_data(upload(&server, &ct, body).await);
    assert_task_shape(&started, "KEY_IMPORT", "uploaded");
    assert_eq!(started["total"], 4);
    let done = finished_task(&server).await;
    assert_eq!(
        done["result"],
        json!({"added_count": 3, "ignored_count": 1})
    );
    assert_eq!(
        key_values(&server, id, "").await,
        ["sk-file-1", "sk-file-2", "sk-file-3"]
    );
    let (status, key) = proxied_key(&server, &mock, "uploaded").await;
    assert_eq!(status, 200);
    assert!(key.is_some_and(|k| k.starts_with("sk-file-")));

    // Only .txt files; the group and the file are both required.
    let (ct, body) = form(&[
        ("group_id", None, group.as_bytes()),
        ("file", Some("keys.csv"), b"sk-csv-1"),
    ]);
    assert_error(&upload(&server, &ct, body).await, 400, "VALIDATION_FAILED");
    let (ct, body) = form(&[("file", Some("keys.txt"), b"sk-x")]);
    assert_error(&upload(&server, &ct, body).await, 400, "BAD_REQUEST");
    let (ct, body) = form(&[("group_id", None, b"abc"), ("file", Some("k.txt"), b"sk-x")]);
    assert_error(&upload(&server, &ct, body).await, 400, "BAD_REQUEST");
    let (ct, body) = form(&[("group_id", None, group.as_bytes())]);
    assert_error(&upload(&server, &ct, body).await, 400, "BAD_REQUEST");
    let (ct, body) = form(&[
        ("group_id", None, b"99999"),
        ("file", Some("k.txt"), b"sk-x"),
    ]);
    assert_error(&upload(&server, &ct, body).await, 404, "NOT_FOUND");
    let (ct, body) = form(&[
        ("group_id", None, group.as_bytes()),
        ("file", Some("empty.txt"), b" \r\n , "),
    ]);
    assert_error(&upload(&server, &ct, body).await, 400, "VALIDATION_FAILED");
    let (ct, _) = form(&[]);
    let got = upload(&server, &ct, b"garbage without a boundary".to_vec()).await;
    assert_error(&got, 400, "BAD_REQUEST");
    assert_eq!(
        key_values(&server, id, "").await.len(),
        3,
        "nothing more added"
    );
    assert_healthy(&server).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_task_is_409_while_one_runs() {
    let server = Server::start().await;
    let id = server
        .create_group("big", "openai", "https://api.example.com", json!({}))
        .await;
    // Enough keys that the import is still running when the next calls arrive.
    let keys: Vec<String> = (0..200_000).map(|i| format!("sk-busy-{i:08}")).collect();
    let started = ok_data(post_keys(&server, "/api/keys/add-async", id, &keys.join("\n")).await);
    assert_eq!(started["is_running"], true);

    let got = post_keys(&server, "/api/keys/add-async", id, "sk-other").await;
    assert_error(&got, 409, "TASK_IN_PROGRESS");
    let got = post_keys(&server, "/api/keys/delete-async", id, "sk-busy-00000001").await;
    assert_error(&got, 409, "TASK_IN_PROGRESS");
    let (ct, body) = form(&[
        ("group_id", None, id.to_string().as_bytes()),
        ("file", Some("k.txt"), b"sk-other"),
    ]);
    assert_error(&upload(&server, &ct, body).await, 409, "TASK_IN_PROGRESS");

    // While it runs, the status has the running shape; admin calls keep being answered.
    let during = ok_data(server.api("GET", "/api/tasks/status", None).await);
    assert_task_shape(&during, "KEY_IMPORT", "big");
    if during["is_running"] == true {
        assert_eq!(during["total"], 200_000);
        assert!(during.get("result").is_none(), "{during}");
    }
    assert_healthy(&server).await;

    let done = finished_task(&server).await;
    assert_eq!(
        done["result"],
        json!({"added_count": 200_000, "ignored_count": 0})
    );
    let data = ok_data(
        server
            .api(
                "GET",
                &format!("/api/keys?group_id={id}&page=2000&page_size=100"),
                None,
            )
            .await,
    );
    assert_eq!(data["pagination"]["total_items"], 200_000);
    assert_eq!(data["items"].as_array().map(Vec::len), Some(100));
    // Free again.
    ok_data(post_keys(&server, "/api/keys/add-async", id, "sk-after").await);
    finished_task(&server).await;
}

// ---- delete-async ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn delete_async_deletes_in_the_background_and_the_proxy_stops_using_them() {
    let mock = MockUpstream::start().await;
    let server = Server::start().await;
    let id = strict_group(&server, &mock, "pruned").await;
    let keys: Vec<String> = (0..2500).map(|i| format!("sk-del-{i:05}")).collect();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    ok_data(post_keys(&server, "/api/keys/add-async", id, &refs.join("\n")).await);
    finished_task(&server).await;

    // Everything but sk-del-00000; plus a missing key and a repeat (both ignored).
    let mut doomed: Vec<&str> = refs[1..].to_vec();
    doomed.push("sk-missing");
    doomed.push("sk-del-00001");
    let started =
        ok_data(post_keys(&server, "/api/keys/delete-async", id, &doomed.join(",")).await);
    assert_task_shape(&started, "KEY_DELETE", "pruned");
    assert_eq!(started["total"], 2501);
    let done = finished_task(&server).await;
    assert_task_shape(&done, "KEY_DELETE", "pruned");
    assert_eq!(
        done["result"],
        json!({"deleted_count": 2499, "ignored_count": 2})
    );
    assert_eq!(done["processed"], 2501);
    assert_eq!(key_values(&server, id, "").await, ["sk-del-00000"]);
    for _ in 0..3 {
        let (status, key) = proxied_key(&server, &mock, "pruned").await;
        assert_eq!((status, key.as_deref()), (200, Some("sk-del-00000")));
    }
    for text in ["", " ,; "] {
        let got = post_keys(&server, "/api/keys/delete-async", id, text).await;
        assert_error(&got, 400, "VALIDATION_FAILED");
    }
    assert_healthy(&server).await;
}

// ---- export ---------------------------------------------------------------------------------

async fn export(server: &Server, query: &str) -> reqwest::Response {
    // As the console downloads it: a plain link with AUTH_KEY in the query.
    let sep = if query.is_empty() { "" } else { "&" };
    server
        .client
        .get(server.url(&format!("/api/keys/export?key={AUTH_KEY}{sep}{query}")))
        .send()
        .await
        .expect("export")
}

#[tokio::test(flavor = "multi_thread")]
async fn export_streams_keys_by_status_as_an_attachment() {
    let mock = MockUpstream::start().await;
    let server = Server::start().await;
    let id = strict_group(&server, &mock, "exported").await;
    server.add_keys(id, &["sk-exp-bad"]).await;
    blacklist(&server, &mock, "exported", "sk-exp-bad").await;
    // More than one batch of 500, so the stream spans several reads.
    let good: Vec<String> = (0..1203).map(|i| format!("sk-exp-{i:04}")).collect();
    ok_data(post_keys(&server, "/api/keys/add-async", id, &good.join("\n")).await);
    finished_task(&server).await;

    for (status, expected) in [
        (
            "all",
            [vec!["sk-exp-bad".to_string()], good.clone()].concat(),
        ),
        ("active", good.clone()),
        ("invalid", vec!["sk-exp-bad".to_string()]),
    ] {
        let query = if status == "all" {
            format!("group_id={id}")
        } else {
            format!("group_id={id}&status={status}")
        };
        let resp = export(&server, &query).await;
        assert_eq!(resp.status(), 200, "{status}");
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        assert_eq!(header("content-type"), "text/plain; charset=utf-8");
        assert_eq!(
            header("content-disposition"),
            format!("attachment; filename=keys-exported-{status}.txt")
        );
        let text = resp.text().await.expect("file");
        let mut lines: Vec<&str> = text.lines().collect();
        // In id order: the key added first leads (one import's keys are in hash order).
        if status != "active" {
            assert_eq!(lines.first().copied(), Some("sk-exp-bad"), "{status}");
        }
        lines.sort_unstable();
        let mut expected = expected;
        expected.sort_unstable();
        assert_eq!(lines, expected, "{status}: one key per line");
        assert!(text.ends_with('\n'));
    }
    let resp = export(&server, &format!("group_id={id}&status=all")).await;
    assert_eq!(resp.text().await.unwrap().lines().count(), 1204);

    // Errors, and the server still serving after each.
    let no_auth = server
        .client
        .get(server.url(&format!("/api/keys/export?group_id={id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(no_auth.status(), 401);
    for (query, status, code) in [
        ("", 400, "BAD_REQUEST"),
        ("group_id=abc", 400, "BAD_REQUEST"),
        ("group_id=99999", 404, "NOT_FOUND"),
        (
            &format!("group_id={id}&status=bogus") as &str,
            400,
            "VALIDATION_FAILED",
        ),
    ] {
        let resp = export(&server, query).await;
        let got = (
            resp.status().as_u16(),
            resp.json::<Value>().await.unwrap_or_default(),
        );
        assert_error(&got, status, code);
        assert_healthy(&server).await;
    }
    let empty = server
        .create_group("empty", "openai", "https://api.example.com", json!({}))
        .await;
    let resp = export(&server, &format!("group_id={empty}")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "");
}

// ---- restore --------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn restore_makes_a_blacklisted_key_usable_by_the_proxy_at_once() {
    let mock = MockUpstream::start().await;
    let server = Server::start().await;
    let id = strict_group(&server, &mock, "restored").await;
    server.add_keys(id, &["sk-res-1"]).await;
    blacklist(&server, &mock, "restored", "sk-res-1").await;
    let entry = server.key_entry(id, "sk-res-1").await;
    assert_eq!(
        (entry["status"].clone(), entry["failure_count"].clone()),
        (json!("invalid"), json!(1))
    );
    let (status, _) = proxied_key(&server, &mock, "restored").await;
    assert_eq!(status, 503, "no active key left");

    let got = post_keys(
        &server,
        "/api/keys/restore-multiple",
        id,
        "sk-res-1 sk-nope",
    )
    .await;
    assert_eq!(
        ok_data(got),
        json!({"restored_count": 1, "ignored_count": 1, "total_in_group": 1})
    );
    let entry = server.key_entry(id, "sk-res-1").await;
    assert_eq!(
        (entry["status"].clone(), entry["failure_count"].clone()),
        (json!("active"), json!(0))
    );
    let (status, key) = proxied_key(&server, &mock, "restored").await;
    assert_eq!((status, key.as_deref()), (200, Some("sk-res-1")));
    // Restoring an active key does nothing.
    let got = post_keys(&server, "/api/keys/restore-multiple", id, "sk-res-1").await;
    assert_eq!(
        ok_data(got),
        json!({"restored_count": 0, "ignored_count": 1, "total_in_group": 1})
    );

    // restore-all-invalid: two blacklisted keys come back, with the count in the message.
    server.add_keys(id, &["sk-res-2"]).await;
    for key in ["sk-res-1", "sk-res-2"] {
        mock.fail_key(key, 401, r#"{"error":{"message":"revoked"}}"#);
    }
    // Round robin takes each key in turn; a few more tries cover a ring rebuilt in between.
    for _ in 0..10 {
        let (status, _) = proxied_key(&server, &mock, "restored").await;
        assert!(status == 401 || status == 503, "{status}");
        if status == 503 {
            break;
        }
    }
    for key in ["sk-res-1", "sk-res-2"] {
        mock.heal_key(key);
    }
    // The status filter reads the database, which follows the live state by one log flush.
    eventually("both keys invalid in the database", || async {
        key_values(&server, id, "&status=invalid").await.len() == 2
    })
    .await;
    let got = server
        .client
        .post(server.url("/api/keys/restore-all-invalid"))
        .bearer_auth(AUTH_KEY)
        .header("accept-language", "en-US")
        .json(&json!({"group_id": id}))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    let body: Value = got.json().await.unwrap();
    assert_eq!(body["code"], 0);
    assert_eq!(body["message"], "2 keys restored");
    assert_eq!(key_values(&server, id, "&status=active").await.len(), 2);
    let (status, _) = proxied_key(&server, &mock, "restored").await;
    assert_eq!(status, 200);
    // Nothing left to restore.
    let got = server
        .api(
            "POST",
            "/api/keys/restore-all-invalid",
            Some(json!({"group_id": id})),
        )
        .await;
    assert!(
        got.1["message"].as_str().unwrap_or_default().contains('0'),
        "{}",
        got.1
    );

    // A restored key's counter is reset in the database too (seen after a restart).
    let db = server.db();
    let failures: i64 = db
        .query_row(
            "SELECT failure_count FROM api_keys WHERE key_value = 'sk-res-2'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(failures, 0);
    assert_healthy(&server).await;
}

// ---- clear ----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn clear_all_invalid_then_clear_all_empties_the_pool() {
    let mock = MockUpstream::start().await;
    let server = Server::start().await;
    let id = strict_group(&server, &mock, "cleared").await;
    server.add_keys(id, &["sk-clr-bad"]).await;
    blacklist(&server, &mock, "cleared", "sk-clr-bad").await;
    server.add_keys(id, &["sk-clr-1", "sk-clr-2"]).await;

    let got = server
        .client
        .post(server.url("/api/keys/clear-all-invalid"))
        .bearer_auth(AUTH_KEY)
        .header("accept-language", "en-US")
        .json(&json!({"group_id": id}))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    let body: Value = got.json().await.unwrap();
    assert_eq!(body["message"], "1 invalid keys cleared");
    assert_eq!(
        body["data"]["message"], "1 invalid keys cleared",
        "the console shows data.message"
    );
    assert_eq!(key_values(&server, id, "").await, ["sk-clr-1", "sk-clr-2"]);

    let got = server
        .api("POST", "/api/keys/clear-all", Some(json!({"group_id": id})))
        .await;
    assert_eq!(got.0, 200, "{}", got.1);
    assert_eq!(got.1["message"], "2个密钥已清除", "zh-CN by default, as v1");
    assert!(key_values(&server, id, "").await.is_empty());
    let resp = server.proxy_post(&chat_path("cleared"), chat()).await;
    assert_eq!(resp.status(), 503, "no keys left in the pool");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "NO_KEYS_AVAILABLE");

    // The database agrees (e.g. after a restart).
    let count: i64 = server
        .db()
        .query_row(
            "SELECT COUNT(*) FROM api_keys WHERE group_id = ?1",
            [id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(count, 0);
    assert_healthy(&server).await;
}

// ---- notes ----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn key_notes_are_trimmed_and_at_most_255_characters() {
    let server = Server::start().await;
    let id = server
        .create_group("noted", "openai", "https://api.example.com", json!({}))
        .await;
    server.add_keys(id, &["sk-note-1"]).await;
    let key_id = server.key_entry(id, "sk-note-1").await["id"]
        .as_i64()
        .unwrap();
    let path = format!("/api/keys/{key_id}/notes");

    let got = server
        .api("PUT", &path, Some(json!({"notes": "  team A  \n"})))
        .await;
    assert_eq!((got.0, got.1["code"].clone()), (200, json!(0)), "{}", got.1);
    assert_eq!(server.key_entry(id, "sk-note-1").await["notes"], "team A");

    // 255 characters of three bytes each fit (runes, not bytes); 256 do not.
    let longest = "键".repeat(255);
    let got = server
        .api("PUT", &path, Some(json!({"notes": longest})))
        .await;
    assert_eq!(got.0, 200, "{}", got.1);
    assert_eq!(server.key_entry(id, "sk-note-1").await["notes"], longest);
    let got = server
        .api("PUT", &path, Some(json!({"notes": "键".repeat(256)})))
        .await;
    assert_error(&got, 400, "VALIDATION_FAILED");
    // Surrounding spaces do not count.
    let padded = format!("  {}  ", "n".repeat(255));
    assert_eq!(
        server
            .api("PUT", &path, Some(json!({"notes": padded})))
            .await
            .0,
        200
    );
    assert_eq!(
        server.key_entry(id, "sk-note-1").await["notes"],
        "n".repeat(255)
    );
    // Empty clears.
    assert_eq!(
        server.api("PUT", &path, Some(json!({"notes": ""}))).await.0,
        200
    );
    assert_eq!(server.key_entry(id, "sk-note-1").await["notes"], "");

    let got = server
        .api("PUT", "/api/keys/99999/notes", Some(json!({"notes": "x"})))
        .await;
    assert_error(&got, 404, "NOT_FOUND");
    let got = server
        .api("PUT", "/api/keys/abc/notes", Some(json!({"notes": "x"})))
        .await;
    assert_error(&got, 400, "BAD_REQUEST");
    let got = server.api_text("PUT", &path, "{notes:").await;
    assert_error(&got, 400, "INVALID_JSON");
    assert_healthy(&server).await;
}

// ---- errors shared by every endpoint --------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn every_new_key_endpoint_rejects_bad_calls_and_keeps_serving() {
    let server = Server::start().await;
    let id = server
        .create_group("strict", "openai", "https://api.example.com", json!({}))
        .await;
    let with_keys = [
        "/api/keys/add-async",
        "/api/keys/delete-async",
        "/api/keys/restore-multiple",
    ];
    let group_only = [
        "/api/keys/restore-all-invalid",
        "/api/keys/clear-all-invalid",
        "/api/keys/clear-all",
    ];
    for path in with_keys.iter().chain(&group_only) {
        // No AUTH_KEY.
        let resp = server
            .client
            .post(server.url(path))
            .json(&json!({"group_id": id, "keys_text": "sk-x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{path}");
        assert_error(
            &server.api_text("POST", path, "{not json").await,
            400,
            "INVALID_JSON",
        );
        let got = server
            .api(
                "POST",
                path,
                Some(json!({"group_id": 99999, "keys_text": "sk-x"})),
            )
            .await;
        assert_error(&got, 404, "NOT_FOUND");
        let got = server
            .api("POST", path, Some(json!({"keys_text": "sk-x"})))
            .await;
        assert_eq!(got.0, 400, "{path} without group_id: {}", got.1);
        let got = server
            .api(
                "POST",
                path,
                Some(json!({"group_id": "one", "keys_text": "sk-x"})),
            )
            .await;
        assert_eq!(got.0, 400, "{path} with a string group_id: {}", got.1);
        assert_healthy(&server).await;
    }
    for path in with_keys {
        let got = post_keys(&server, path, id, " \n ").await;
        assert_error(&got, 400, "VALIDATION_FAILED");
    }
    let too_many: Vec<String> = (0..5001).map(|i| format!("sk-{i}")).collect();
    let got = post_keys(
        &server,
        "/api/keys/restore-multiple",
        id,
        &too_many.join(" "),
    )
    .await;
    assert_error(&got, 400, "VALIDATION_FAILED");
    let resp = server
        .client
        .put(server.url("/api/keys/1/notes"))
        .json(&json!({"notes": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    // Aggregate groups have no keys of their own.
    let aggregate = server
        .api(
            "POST",
            "/api/groups",
            Some(json!({
                "name": "agg", "group_type": "aggregate", "channel_type": "openai",
                "upstreams": [], "proxy_keys": "sk-agg",
            })),
        )
        .await;
    if let Some(agg) = aggregate.1["data"]["id"].as_i64() {
        let got = post_keys(&server, "/api/keys/add-async", agg, "sk-x").await;
        assert_eq!(got.0, 400, "{}", got.1);
    }
    assert_healthy(&server).await;
}

// ---- body size ------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn admin_bodies_have_their_own_larger_cap() {
    // Over the 32 MiB proxy cap: mostly whitespace, so the test stays quick.
    let server = Server::start().await;
    let id = server
        .create_group("large", "openai", "https://api.example.com", json!({}))
        .await;
    let text = format!("sk-big-1{}sk-big-2", " ".repeat(33 * 1024 * 1024));
    let started = ok_data(post_keys(&server, "/api/keys/add-async", id, &text).await);
    assert_eq!(started["total"], 2);
    let done = finished_task(&server).await;
    assert_eq!(
        done["result"],
        json!({"added_count": 2, "ignored_count": 0})
    );

    // MAX_ADMIN_BODY_MB lowers it: refused from the length alone, the server still serving.
    let small = Server::start_with(&[("MAX_ADMIN_BODY_MB", "1")]).await;
    let id = small
        .create_group("small", "openai", "https://api.example.com", json!({}))
        .await;
    // Only the head: the length alone is refused, before a body byte is read.
    let head = format!(
        "POST /api/keys/add-async HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {AUTH_KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        2 * 1024 * 1024
    );
    let (response, _) =
        common::raw_exchange_closed(small.port, head.as_bytes(), Duration::from_secs(10)).await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert_healthy(&small).await;
    let got = post_keys(&small, "/api/keys/add-async", id, "sk-fits").await;
    assert_eq!(got.0, 200, "{}", got.1);
}
