//! The process around the proxy: request logs and counters written at shutdown (spec §1.5,
//! §2.14), graceful shutdown with requests in flight, startup errors (§5.1), opening a database
//! GPT-Load v1 left behind (§1.6b), and never printing a secret (§7).

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use common::{AUTH_KEY, PROXY_KEY, Server, chat, chat_path, free_port};
use mock_upstream::MockUpstream;
use serde_json::{Value, json};

/// Bound on waiting for the mock, a process exit or a response; a failure, not a sleep.
const WAIT: Duration = Duration::from_secs(20);

/// `api_keys.key_hash` without ENCRYPTION_KEY: SHA-256, hex.
fn key_hash(key: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// One `request_logs` row, the columns the tests look at.
#[derive(Debug)]
struct LogRow {
    group_id: i64,
    group_name: String,
    key_value: String,
    key_hash: String,
    model: String,
    is_success: bool,
    status_code: i64,
    request_path: String,
    request_type: String,
    upstream_addr: String,
    is_stream: bool,
    duration_ms: i64,
    error_message: String,
    source_ip: String,
}

fn log_rows(db: &rusqlite::Connection) -> Vec<LogRow> {
    let mut stmt = db
        .prepare(
            "SELECT group_id, group_name, key_value, key_hash, model, is_success, status_code, \
             request_path, request_type, upstream_addr, is_stream, duration_ms, \
             COALESCE(error_message, ''), COALESCE(source_ip, '') \
             FROM request_logs ORDER BY timestamp, rowid",
        )
        .unwrap();
    stmt.query_map([], |r| {
        Ok(LogRow {
            group_id: r.get(0)?,
            group_name: r.get(1)?,
            key_value: r.get(2)?,
            key_hash: r.get(3)?,
            model: r.get(4)?,
            is_success: r.get(5)?,
            status_code: r.get(6)?,
            request_path: r.get(7)?,
            request_type: r.get(8)?,
            upstream_addr: r.get(9)?,
            is_stream: r.get(10)?,
            duration_ms: r.get(11)?,
            error_message: r.get(12)?,
            source_ip: r.get(13)?,
        })
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// (success_count, failure_count) summed over the group's hourly rows.
fn hourly(db: &rusqlite::Connection, group_id: i64) -> (i64, i64) {
    db.query_row(
        "SELECT COALESCE(SUM(success_count), 0), COALESCE(SUM(failure_count), 0) \
         FROM group_hourly_stats WHERE group_id = ?1",
        [group_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .unwrap()
}

/// (request_count, failure_count, last_used_at) of a key.
fn key_counters(db: &rusqlite::Connection, key: &str) -> (i64, i64, Option<String>) {
    db.query_row(
        "SELECT request_count, failure_count, last_used_at FROM api_keys WHERE key_value = ?1",
        [key],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .unwrap()
}

// ---- §2.14 request logs ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn s2_14_every_attempt_is_logged_and_counted_at_shutdown() {
    let mock = MockUpstream::start().await;
    let bad = ["sk-logs-bad-one-111111", "sk-logs-bad-two-222222"];
    for key in bad {
        // The upstream echoes the key in its error, as real providers do.
        let body = json!({"error": {"message": format!("Incorrect API key provided: {key}")}});
        mock.fail_key(key, 401, &body.to_string());
    }
    let good = "sk-logs-good-333333";
    let mut server = Server::start().await;
    let ok_id = server
        .create_group("served", "openai", &mock.url(), json!({}))
        .await;
    server.add_keys(ok_id, &[good]).await;
    // Both keys fail and max_retries 1: exactly one retry row and one final row.
    let config = json!({"config": {"max_retries": 1}});
    let failing_id = server
        .create_group("failing", "openai", &mock.url(), config)
        .await;
    server.add_keys(failing_id, &bad).await;

    // 1. A success, with the proxy key in the query (it must not reach the log).
    let resp = server
        .client
        .post(server.url(&format!(
            "{}?key={PROXY_KEY}&trace=abc",
            chat_path("served")
        )))
        .header("x-mock-delay-ms", "60")
        .json(&chat())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // 2. A streamed success.
    let mut stream_body = chat();
    stream_body["stream"] = json!(true);
    let resp = server.proxy_post(&chat_path("served"), stream_body).await;
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    // 3. A 404 from upstream is passed through, not retried.
    let resp = server
        .proxy_post(
            "/proxy/served/v1/no-such-endpoint",
            json!({"model": "gpt-x"}),
        )
        .await;
    assert_eq!(resp.status(), 404);
    // 4. Failover: one retry, then the final failure goes back to the client.
    let resp = server.proxy_post(&chat_path("failing"), chat()).await;
    assert_eq!(resp.status(), 401);
    resp.bytes().await.unwrap();
    assert_eq!(mock.request_count(), 5);

    assert!(server.stop().await.success());
    let db = server.db();
    let rows = log_rows(&db);
    assert_eq!(rows.len(), 5, "one row per attempt: {rows:#?}");

    let served: Vec<&LogRow> = rows.iter().filter(|r| r.group_id == ok_id).collect();
    assert_eq!(served.len(), 3);
    for row in &served {
        assert_eq!(row.group_name, "served");
        assert_eq!(row.request_type, "final");
        assert_eq!(row.key_value, good);
        assert_eq!(row.key_hash, key_hash(good));
        assert!(
            row.error_message.is_empty() || row.status_code == 404,
            "{row:?}"
        );
    }
    let first = served
        .iter()
        .find(|r| r.request_path.contains("chat/completions?"))
        .expect("the request with a query string");
    assert_eq!(
        first.request_path,
        "/proxy/served/v1/chat/completions?trace=abc"
    );
    assert_eq!(
        first.upstream_addr,
        format!("{}/v1/chat/completions?trace=abc", mock.url())
    );
    assert_eq!(
        (first.status_code, first.is_success, first.is_stream),
        (200, true, false)
    );
    assert_eq!(first.model, "gpt-4o-mini");
    assert_eq!(first.source_ip, "127.0.0.1");
    assert!(
        first.duration_ms >= 60,
        "duration covers the upstream's delay: {first:?}"
    );
    let streamed = served
        .iter()
        .find(|r| r.is_stream)
        .expect("the streamed request");
    assert_eq!(streamed.request_path, "/proxy/served/v1/chat/completions");
    assert_eq!((streamed.status_code, streamed.is_success), (200, true));
    let missing = served
        .iter()
        .find(|r| r.status_code == 404)
        .expect("the 404 row");
    assert!(!missing.is_success);
    assert_eq!(missing.model, "gpt-x");
    assert_eq!(missing.request_path, "/proxy/served/v1/no-such-endpoint");

    let failing: Vec<&LogRow> = rows.iter().filter(|r| r.group_id == failing_id).collect();
    let types: Vec<&str> = failing.iter().map(|r| r.request_type.as_str()).collect();
    assert_eq!(types, ["retry", "final"]);
    let used: BTreeSet<&str> = failing.iter().map(|r| r.key_value.as_str()).collect();
    assert_eq!(used, BTreeSet::from(bad), "the retry used the other key");
    for row in &failing {
        assert_eq!((row.status_code, row.is_success), (401, false));
        assert_eq!(row.group_name, "failing");
        assert_eq!(row.key_hash, key_hash(&row.key_value));
        assert!(
            row.error_message.contains("Incorrect API key provided"),
            "{row:?}"
        );
        assert!(
            !row.error_message.contains(&row.key_value),
            "the key is redacted from the error: {row:?}"
        );
    }

    // Counters: successful uses per key, failures per key, final attempts per group and hour.
    let (requests, failures, last_used) = key_counters(&db, good);
    assert_eq!(
        (requests, failures),
        (2, 0),
        "two successes; the 404 is not a failure"
    );
    assert!(last_used.is_some());
    for key in bad {
        let (requests, failures, last_used) = key_counters(&db, key);
        assert_eq!((requests, failures, last_used), (0, 1, None), "{key}");
    }
    assert_eq!(hourly(&db, ok_id), (2, 1));
    assert_eq!(
        hourly(&db, failing_id),
        (0, 1),
        "retry rows are not counted"
    );
    server.assert_logs_free_of(&[AUTH_KEY, PROXY_KEY, good, bad[0], bad[1]]);
}

// ---- graceful shutdown ----------------------------------------------------------------------

/// A server with group `slow` on a fresh mock, for the drain tests.
async fn slow_group() -> (MockUpstream, Server) {
    let mock = MockUpstream::start().await;
    let server = Server::start().await;
    let id = server
        .create_group("slow", "openai", &mock.url(), json!({}))
        .await;
    server.add_keys(id, &["sk-slow-upstream"]).await;
    (mock, server)
}

/// A chat completion to group `slow` that the mock answers after `delay_ms`.
fn slow_request(
    server: &Server,
    delay_ms: u64,
) -> impl std::future::Future<Output = reqwest::Result<reqwest::Response>> + use<> {
    server
        .client
        .post(server.url(&chat_path("slow")))
        .bearer_auth(PROXY_KEY)
        .header("x-mock-delay-ms", delay_ms.to_string())
        .json(&chat())
        .send()
}

#[tokio::test(flavor = "multi_thread")]
async fn s5_1_graceful_shutdown_finishes_requests_in_flight() {
    let (mock, mut server) = slow_group().await;

    let request = slow_request(&server, 1500);
    let in_flight = tokio::spawn(async move {
        let resp = request.await.expect("the request in flight is answered");
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.expect("a whole JSON body");
        (status, body)
    });
    tokio::time::timeout(WAIT, mock.wait_requests(1))
        .await
        .expect("the request reached the upstream");

    server.terminate();
    server.wait_for_log("shutting down").await;
    // A fresh client, so no pooled connection can hide a refusal.
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let late = tokio::time::timeout(WAIT, fresh.get(server.url("/health")).send())
        .await
        .expect("a late request does not hang");
    assert!(
        late.is_err(),
        "a new connection after SIGTERM was served: {late:?}"
    );

    let (status, body) = tokio::time::timeout(WAIT, in_flight)
        .await
        .expect("the request in flight finishes")
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "chat.completion");
    let exit = server.wait_exit().await;
    assert!(exit.success(), "exit status {exit:?}:\n{}", server.logs());

    let rows = log_rows(&server.db());
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!((rows[0].status_code, rows[0].is_success), (200, true));
    assert!(rows[0].duration_ms >= 1500, "{:?}", rows[0]);
    server.assert_logs_free_of(&[AUTH_KEY, PROXY_KEY, "sk-slow-upstream"]);
}

// ---- §5.1 startup errors --------------------------------------------------------------------

/// Runs the binary in `dir` with only `env` (plus PATH) and returns (exit code, stderr).
async fn run_failing(dir: &Path, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_gpt-load"));
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("XDG_RUNTIME_DIR", dir)
        .env("ENGINE_THREADS", "1")
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(WAIT, cmd.output())
        .await
        .expect("gpt-load exits on a configuration error instead of running")
        .expect("spawn gpt-load");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code(), stderr)
}

#[tokio::test(flavor = "multi_thread")]
async fn s5_1_startup_errors_name_the_variable() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port().to_string();
    let db = tmp.path().join("data/gpt-load.db");
    let db = db.to_str().unwrap();
    let base = [("HOST", "127.0.0.1"), ("DATABASE_DSN", db)];

    let (code, stderr) =
        run_failing(tmp.path(), &[base[0], base[1], ("PORT", port.as_str())]).await;
    assert_ne!(code, Some(0), "started without AUTH_KEY: {stderr}");
    assert!(code.is_some(), "killed by a signal: {stderr}");
    assert!(stderr.contains("AUTH_KEY"), "{stderr}");

    for bad_port in ["abc", "0", "70000"] {
        let env = [base[0], base[1], ("AUTH_KEY", AUTH_KEY), ("PORT", bad_port)];
        let (code, stderr) = run_failing(tmp.path(), &env).await;
        assert!(
            code.is_some_and(|c| c != 0),
            "PORT={bad_port}: {code:?} {stderr}"
        );
        assert!(stderr.contains("PORT"), "PORT={bad_port}: {stderr}");
        assert!(
            stderr.contains(bad_port),
            "the bad value is shown: {stderr}"
        );
        assert!(!stderr.contains(AUTH_KEY), "{stderr}");
    }

    let password = "hunter2-Secret-pw";
    let dsns = [
        (
            format!("postgres://gpt:{password}@db.example.com:5432/gptload"),
            "PostgreSQL",
        ),
        (
            format!("postgresql://gpt:{password}@db.example.com/gptload"),
            "PostgreSQL",
        ),
        (
            format!("root:{password}@tcp(127.0.0.1:3306)/gptload?charset=utf8mb4"),
            "MySQL",
        ),
    ];
    for (dsn, database) in &dsns {
        let env = [
            ("HOST", "127.0.0.1"),
            ("PORT", port.as_str()),
            ("AUTH_KEY", AUTH_KEY),
            ("DATABASE_DSN", dsn.as_str()),
        ];
        let (code, stderr) = run_failing(tmp.path(), &env).await;
        assert!(code.is_some_and(|c| c != 0), "{dsn}: {code:?} {stderr}");
        assert!(stderr.contains("DATABASE_DSN"), "{stderr}");
        assert!(stderr.contains(database), "names {database}: {stderr}");
        assert!(
            stderr.to_lowercase().contains("support"),
            "says it is not supported yet: {stderr}"
        );
        assert!(!stderr.contains(password), "the password leaked: {stderr}");
        assert!(!stderr.contains(AUTH_KEY), "{stderr}");
    }
    assert!(
        !db_exists(tmp.path()),
        "no SQLite file was created on the way"
    );
}

fn db_exists(dir: &Path) -> bool {
    dir.join("data/gpt-load.db").exists()
}

// ---- §1.6b a GPT-Load v1 database -----------------------------------------------------------

/// GPT-Load v1's DDL as GORM (glebarez SQLite driver) creates it, shared with the store's tests.
const V1_FIXTURE: &str = include_str!("../../store/tests/fixtures/gorm_v1_sqlite.sql");

const V1_GLOBAL_PROXY_KEY: &str = "sk-v1-global-Lm3nB8vC";
const V1_ACTIVE: [&str; 2] = ["sk-v1-active-one-Aa11", "sk-v1-active-two-Bb22"];
const V1_INVALID: &str = "sk-v1-invalid-three-Cc33";

/// Builds `dir/data/gpt-load.db` the way v1 leaves it: one group on `upstream`, two active keys
/// and one invalid, the settings rows (retention off, so the start-up pass keeps it), one old
/// request log.
fn write_v1_database(dir: &Path, upstream: &str) {
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let db = rusqlite::Connection::open(dir.join("data/gpt-load.db")).unwrap();
    // Only the fixture's schema: its rows are the store tests' business.
    let ddl: Vec<&str> = V1_FIXTURE
        .lines()
        .filter(|l| l.starts_with("CREATE "))
        .collect();
    assert!(ddl.len() >= 6, "the fixture still holds v1's DDL");
    db.execute_batch(&ddl.join("\n")).unwrap();
    let t = "2025-09-01 12:00:00.123456789+08:00";
    db.execute_batch(&format!(
        "INSERT INTO `system_settings` (`setting_key`,`setting_value`,`description`,`created_at`,`updated_at`) VALUES
          ('app_url','http://gpt.example.com','config.app_url_desc','{t}','{t}'),
          ('proxy_keys','{V1_GLOBAL_PROXY_KEY}','config.proxy_keys_desc','{t}','{t}'),
          ('max_retries','2',NULL,'{t}','{t}'),
          ('request_log_retention_days','0',NULL,'{t}','{t}');
         INSERT INTO `groups` (`id`,`name`,`display_name`,`proxy_keys`,`description`,`group_type`,`upstreams`,`validation_endpoint`,`channel_type`,`sort`,`test_model`,`param_overrides`,`config`,`header_rules`,`model_redirect_rules`,`model_redirect_strict`,`last_validated_at`,`created_at`,`updated_at`) VALUES
          (7,'legacy','Legacy Pool','gk-legacy','from v1','standard','[{{\"url\":\"{upstream}\",\"weight\":1}}]','','openai',0,'gpt-4.1-nano',NULL,'{{}}','[]',NULL,0,NULL,'{t}','{t}');
         INSERT INTO `api_keys` (`id`,`key_value`,`key_hash`,`group_id`,`status`,`notes`,`request_count`,`failure_count`,`last_used_at`,`created_at`,`updated_at`) VALUES
          (1,'{a}','{ha}',7,'active','',10,0,'2025-09-01 12:30:00.5+08:00','{t}','{t}'),
          (2,'{i}','{hi}',7,'invalid',NULL,0,3,NULL,'{t}','{t}'),
          (3,'{b}','{hb}',7,'active','second',0,1,NULL,'{t}','{t}');
         INSERT INTO `request_logs` (`id`,`timestamp`,`group_id`,`group_name`,`parent_group_id`,`parent_group_name`,`key_value`,`key_hash`,`model`,`is_success`,`source_ip`,`status_code`,`request_path`,`duration_ms`,`error_message`,`user_agent`,`request_type`,`upstream_addr`,`is_stream`,`request_body`) VALUES
          ('0b6f3c52-1111-4a2b-9c3d-abcdefabcdef','2025-09-01 12:30:00.5+08:00',7,'legacy',0,'','{a}','{ha}','gpt-4.1',1,'10.0.0.1',200,'/proxy/legacy/v1/chat/completions',321,'','','final','{upstream}/v1/chat/completions',0,'');",
        a = V1_ACTIVE[0],
        b = V1_ACTIVE[1],
        i = V1_INVALID,
        ha = key_hash(V1_ACTIVE[0]),
        hb = key_hash(V1_ACTIVE[1]),
        hi = key_hash(V1_INVALID),
    ))
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn s1_6b_a_v1_database_opens_and_serves() {
    let mock = MockUpstream::start().await;
    mock.fail_key(V1_INVALID, 401, r#"{"error":{"message":"revoked"}}"#);
    let tmp = tempfile::tempdir().unwrap();
    write_v1_database(tmp.path(), &mock.url());
    let mut server = Server::start_in(tmp.path(), &[]).await;

    let (status, groups) = server.api("GET", "/api/groups", None).await;
    assert_eq!(status, 200, "{groups}");
    let groups = groups["data"].as_array().expect("groups").clone();
    assert_eq!(groups.len(), 1, "{groups:?}");
    let group = &groups[0];
    assert_eq!(group["id"], 7);
    assert_eq!(group["name"], "legacy");
    assert_eq!(group["display_name"], "Legacy Pool");
    assert_eq!(group["upstreams"][0]["url"], mock.url());
    assert_eq!(
        group["endpoint"], "http://gpt.example.com/proxy/legacy",
        "v1's app_url"
    );
    assert!(
        group["created_at"]
            .as_str()
            .is_some_and(|t| t.starts_with("2025-09-01"))
    );

    let (status, keys) = server.api("GET", "/api/keys?group_id=7", None).await;
    assert_eq!(status, 200, "{keys}");
    let statuses: BTreeSet<(String, String)> = keys["data"]["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|k| {
            let s = |f: &str| k[f].as_str().unwrap_or_default().to_string();
            (s("key_value"), s("status"))
        })
        .collect();
    let expected: BTreeSet<(String, String)> = [
        (V1_ACTIVE[0], "active"),
        (V1_ACTIVE[1], "active"),
        (V1_INVALID, "invalid"),
    ]
    .iter()
    .map(|(k, s)| (k.to_string(), s.to_string()))
    .collect();
    assert_eq!(statuses, expected);
    let (_, search) = server
        .api(
            "GET",
            &format!("/api/keys?group_id=7&key_value={}", V1_ACTIVE[1]),
            None,
        )
        .await;
    assert_eq!(
        search["data"]["pagination"]["total_items"], 1,
        "v1's key_hash finds it"
    );
    let settings = server.api("GET", "/api/settings", None).await.1;
    let max_retries = settings["data"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["settings"].as_array().unwrap())
        .find(|s| s["key"] == "max_retries")
        .unwrap()["value"]
        .clone();
    assert_eq!(max_retries, 2, "v1's stored value, not the default");

    // v1's global proxy key and the group's own key both work; the invalid key is never used.
    for key in [
        V1_GLOBAL_PROXY_KEY,
        "gk-legacy",
        V1_GLOBAL_PROXY_KEY,
        "gk-legacy",
    ] {
        let resp = server
            .proxy_post_as(key, &chat_path("legacy"), chat())
            .await;
        assert_eq!(resp.status(), 200, "proxy key {key}");
    }
    let resp = server
        .proxy_post_as(AUTH_KEY, &chat_path("legacy"), chat())
        .await;
    assert_eq!(
        resp.status(),
        401,
        "AUTH_KEY is not a proxy key here: v1's setting wins"
    );
    // The start-up re-check validates the invalid key too (with the test model): count only
    // what the proxy sent.
    let used: Vec<String> = mock
        .requests()
        .iter()
        .filter(|r| r.json()["model"] == "gpt-4o-mini")
        .map(|r| r.upstream_key().unwrap_or_default())
        .collect();
    assert_eq!(used.len(), 4);
    assert!(
        used.iter().all(|k| V1_ACTIVE.contains(&k.as_str())),
        "{used:?}"
    );

    assert!(server.stop().await.success());
    let db = server.db();
    let old: i64 = db
        .query_row(
            "SELECT duration_ms FROM request_logs WHERE id = '0b6f3c52-1111-4a2b-9c3d-abcdefabcdef'",
            [],
            |r| r.get(0),
        )
        .expect("v1's log row is still there");
    assert_eq!(old, 321);
    assert_eq!(log_rows(&db).len(), 5, "the old row and four new ones");
    let (requests, _, _) = key_counters(&db, V1_ACTIVE[0]);
    assert!(
        requests >= 10,
        "v1's count is kept and added to: {requests}"
    );
    let status: String = db
        .query_row("SELECT status FROM api_keys WHERE id = 2", [], |r| r.get(0))
        .unwrap();
    assert_eq!(status, "invalid");
    server.assert_logs_free_of(&[
        AUTH_KEY,
        V1_GLOBAL_PROXY_KEY,
        V1_ACTIVE[0],
        V1_ACTIVE[1],
        V1_INVALID,
    ]);
}

// ---- §7 secrets -----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn s7_logs_never_show_a_secret_even_at_debug_level() {
    let mock = MockUpstream::start().await;
    let leaky = "sk-leaky-upstream-key-Zx9Yw8";
    let body = json!({"error": {"message": format!("invalid key {leaky}")}});
    mock.fail_key(leaky, 500, &body.to_string());
    let healthy = "sk-healthy-upstream-key-Qp4Rs5";
    let mut server = Server::start_with(&[("LOG_LEVEL", "debug")]).await;
    let config = json!({"config": {"max_retries": 1, "blacklist_threshold": 1}});
    let id = server
        .create_group("secrets", "openai", &mock.url(), config)
        .await;
    server.add_keys(id, &[leaky, healthy]).await;

    // Admin calls with AUTH_KEY in the query string, a failed login, proxy calls with the proxy
    // key in the query, and an upstream whose error text contains its key.
    let (status, _) = server
        .api("GET", &format!("/api/groups?key={AUTH_KEY}"), None)
        .await;
    assert_eq!(status, 200);
    let resp = server
        .client
        .post(server.url("/api/auth/login"))
        .json(&json!({"auth_key": format!("{AUTH_KEY}-wrong")}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    for _ in 0..3 {
        let resp = server
            .client
            .post(server.url(&format!("{}?key={PROXY_KEY}", chat_path("secrets"))))
            .json(&chat())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    assert!(
        mock.requests()
            .iter()
            .any(|r| r.upstream_key().as_deref() == Some(leaky)),
        "the leaky key was tried"
    );
    let got = server
        .api(
            "GET",
            &format!("/api/keys?group_id={id}&key_value={healthy}"),
            None,
        )
        .await;
    assert_eq!(got.0, 200);

    assert!(server.stop().await.success());
    let logs = server.logs();
    assert!(
        logs.lines().count() > 3,
        "debug logging produced output:\n{logs}"
    );
    server.assert_logs_free_of(&[AUTH_KEY, PROXY_KEY, leaky, healthy]);
}

/// A keep-alive client connection idle at SIGTERM is closed when the drain starts, not held
/// open until the last request in flight has finished.
#[tokio::test(flavor = "multi_thread")]
async fn s5_1_idle_client_connections_close_when_the_drain_starts() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let (mock, mut server) = slow_group().await;

    // One whole exchange on a raw connection, which then stays open and idle.
    let mut idle = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .expect("connect");
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("write");
    let mut received = Vec::new();
    let answered = async {
        let mut buf = [0u8; 4096];
        loop {
            let n = idle.read(&mut buf).await.expect("read");
            assert!(n > 0, "closed before answering");
            received.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&received);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().to_string())
                    })
                    .and_then(|v| v.parse().ok())
                    .expect("a Content-Length");
                if body.len() >= length {
                    return;
                }
            }
        }
    };
    tokio::time::timeout(WAIT, answered)
        .await
        .expect("the first exchange");

    // A slow request keeps the drain going.
    let slow = slow_request(&server, 3000);
    let in_flight = tokio::spawn(async move { slow.await.map(|r| r.status().as_u16()) });
    tokio::time::timeout(WAIT, mock.wait_requests(1))
        .await
        .expect("the slow request reached the upstream");

    server.terminate();
    let mut rest = Vec::new();
    let closed = idle.read_to_end(&mut rest);
    tokio::pin!(closed);
    tokio::pin!(in_flight);
    tokio::select! {
        read = &mut closed => {
            assert_eq!(read.expect("a clean close"), 0, "no bytes after the exchange");
        }
        _ = &mut in_flight => panic!("the idle connection stayed open until the drain ended"),
    }
    let status = tokio::time::timeout(WAIT, in_flight)
        .await
        .expect("the request in flight finishes")
        .expect("join")
        .expect("answered");
    assert_eq!(status, 200);
    assert!(server.wait_exit().await.success(), "{}", server.logs());
}
