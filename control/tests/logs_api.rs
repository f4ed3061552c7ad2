//! The logs page against the real binary (spec §3.3, console-api §6): `GET /api/logs` with each
//! of v1's filters, paging and order, the CSV key export, bad filters, and retention.
//!
//! Traffic is real: three standard groups behind a recording mock (one key always fine, one
//! that fails until healed, one pair that forces a retry) and an aggregate, with the log write
//! interval at 0 so each row is queryable moments after its request.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use common::{AUTH_KEY, PROXY_KEY, Server};
use mock_upstream::MockUpstream;
use serde_json::{Value, json};

/// Bound on waiting for log rows to be written; a failure, not a sleep.
const LOG_TIMEOUT: Duration = Duration::from_secs(10);

const ALPHA_KEY: &str = "sk-alpha-good-4f8a2c91d7";
const BETA_KEY: &str = "sk-beta-flaky-93be71c2aa";
const RETRY_BAD: &str = "sk-retry-bad-0c5e8d13f2";
const RETRY_GOOD: &str = "sk-retry-good-7a61b4e9c0";
const AGG_PROXY_KEY: &str = "sk-aggregate-client-Kq7Wm2Xp9Lr4";
const CLIENT_IP: &str = "203.0.113.7";

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

/// `data` of a successful envelope (the logs page insists on `code === 0`).
#[track_caller]
fn data(got: (u16, Value)) -> Value {
    assert_eq!(got.0, 200, "{}", got.1);
    assert_eq!(got.1["code"], 0, "{}", got.1);
    got.1["data"].clone()
}

/// Polls `GET /api/logs` until it lists `n` rows; the write interval is 0, so this is the time
/// one SQLite transaction takes, bounded by [`LOG_TIMEOUT`].
async fn wait_for_logs(server: &Server, n: i64) -> Value {
    let deadline = tokio::time::Instant::now() + LOG_TIMEOUT;
    loop {
        let page = data(server.api("GET", "/api/logs?page_size=100", None).await);
        let total = page["pagination"]["total_items"].as_i64().unwrap_or(-1);
        if total == n {
            return page;
        }
        assert!(
            total < n && tokio::time::Instant::now() < deadline,
            "expected {n} log rows, have {total}: {page}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The ids of the rows `GET /api/logs?{query}` lists, checking `total_items` agrees.
async fn listed(server: &Server, query: &str) -> Vec<Value> {
    let page = data(
        server
            .api("GET", &format!("/api/logs?page_size=1000&{query}"), None)
            .await,
    );
    let items = page["items"].as_array().cloned().expect("items");
    assert_eq!(
        page["pagination"]["total_items"].as_u64(),
        Some(items.len() as u64),
        "{query}"
    );
    items
}

async fn count(server: &Server, query: &str) -> usize {
    listed(server, query).await.len()
}

/// What the scenario produced: how many requests went through the aggregate, and how many of
/// those were retried (a first attempt on the failing key).
struct Traffic {
    server: Server,
    _mock: MockUpstream,
    through_aggregate: usize,
    retries: usize,
    beta_request_id: String,
}

async fn create(
    server: &Server,
    name: &str,
    mock: &MockUpstream,
    keys: &[&str],
    config: Value,
) -> i64 {
    let id = server
        .create_group(name, "openai", &mock.url(), json!({ "config": config }))
        .await;
    server.add_keys(id, keys).await;
    id
}

async fn scenario() -> Traffic {
    let mock = MockUpstream::start().await;
    let server = Server::start().await;
    server
        .set_settings(json!({"request_log_write_interval_minutes": 0}))
        .await;
    let quiet = json!({"max_retries": 0, "blacklist_threshold": 0});
    create(&server, "alpha", &mock, &[ALPHA_KEY], quiet.clone()).await;
    create(&server, "beta", &mock, &[BETA_KEY], quiet).await;
    let retrying = create(
        &server,
        "retrying",
        &mock,
        &[RETRY_BAD, RETRY_GOOD],
        json!({"max_retries": 1, "blacklist_threshold": 0}),
    )
    .await;
    let agg = json!({
        "name": "agg", "group_type": "aggregate", "channel_type": "openai",
        "proxy_keys": AGG_PROXY_KEY,
    });
    let agg = data(server.api("POST", "/api/groups", Some(agg)).await)["id"]
        .as_i64()
        .expect("aggregate id");
    let members = json!({"sub_groups": [{"group_id": retrying, "weight": 1}]});
    data(
        server
            .api(
                "POST",
                &format!("/api/groups/{agg}/sub-groups"),
                Some(members),
            )
            .await,
    );

    // alpha: three successes, two models.
    for model in ["gpt-4o-mini", "gpt-4o-mini", "claude-3-haiku"] {
        let resp = server
            .proxy_post("/proxy/alpha/v1/chat/completions", chat(model))
            .await;
        assert_eq!(resp.status(), 200);
    }
    // beta: a 401 from a client behind a proxy, then (key healed) a success.
    mock.fail_key(
        BETA_KEY,
        401,
        r#"{"error":{"message":"invalid api key provided"}}"#,
    );
    let failed = server
        .client
        .post(server.url("/proxy/beta/v1/chat/completions"))
        .bearer_auth(PROXY_KEY)
        .header("X-Forwarded-For", CLIENT_IP)
        .json(&chat("gpt-4o-mini"))
        .send()
        .await
        .expect("beta request");
    assert_eq!(failed.status(), 401);
    let beta_request_id = failed
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("x-request-id")
        .to_string();
    mock.heal_key(BETA_KEY);
    let resp = server
        .proxy_post("/proxy/beta/v1/chat/completions", chat("gpt-4o-mini"))
        .await;
    assert_eq!(resp.status(), 200);

    // through the aggregate until one request starts on the failing key and is retried.
    mock.fail_key(
        RETRY_BAD,
        429,
        r#"{"error":{"message":"rate limited: quota exceeded"}}"#,
    );
    let before = mock.request_count();
    let mut through_aggregate = 0;
    while through_aggregate < 6 {
        let resp = server
            .proxy_post_as(
                AGG_PROXY_KEY,
                "/proxy/agg/v1/chat/completions",
                chat("gpt-4o-mini"),
            )
            .await;
        assert_eq!(resp.status(), 200);
        through_aggregate += 1;
        if mock.request_count() - before > through_aggregate {
            break;
        }
    }
    let retries = mock.request_count() - before - through_aggregate;
    assert!(retries >= 1, "no request started on the failing key");
    let expected = 3 + 2 + through_aggregate + retries;
    wait_for_logs(&server, expected as i64).await;
    Traffic {
        server,
        _mock: mock,
        through_aggregate,
        retries,
        beta_request_id,
    }
}

// ---- GET /api/logs -------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_filter_narrows_the_list() {
    let t = scenario().await;
    let s = &t.server;
    let (agg, retries) = (t.through_aggregate, t.retries);
    let all = 5 + agg + retries;
    assert_eq!(count(s, "").await, all);
    let cases = [
        ("parent_group_name=ag", agg + retries),
        ("group_name=alph", 3),
        ("group_name=RETRY", agg + retries),
        (&format!("key_value={ALPHA_KEY}"), 3),
        (&format!("key_value={RETRY_BAD}"), retries),
        ("key_value=sk-not-a-key-we-have", 0),
        ("model=claude", 1),
        ("model=gpt-4o", 2 + 2 + agg + retries),
        ("is_success=false", 1 + retries),
        ("is_success=true", 3 + 1 + agg),
        ("request_type=retry", retries),
        ("request_type=final", 5 + agg),
        ("status_code=401", 1),
        ("status_code=429", retries),
        (&format!("source_ip={CLIENT_IP}"), 1),
        ("source_ip=203.0.113", 0),
        ("error_contains=quota", retries),
        ("error_contains=invalid%20api", 1),
        ("parent_group_name=agg&request_type=final", agg),
        ("group_name=beta&is_success=true", 1),
        ("start_time=2000-01-01T00:00:00.000Z", all),
        ("end_time=2000-01-01T00:00:00.000Z", 0),
        ("model=", all),
    ];
    for (query, want) in cases {
        assert_eq!(count(s, query).await, want, "{query}");
    }

    // The rows themselves, in v1's field names, with the key in plain text.
    let beta_failure = &listed(s, "status_code=401").await[0];
    for field in [
        "id",
        "timestamp",
        "group_id",
        "group_name",
        "parent_group_id",
        "parent_group_name",
        "key_value",
        "key_hash",
        "model",
        "is_success",
        "source_ip",
        "status_code",
        "request_path",
        "duration_ms",
        "error_message",
        "user_agent",
        "request_type",
        "upstream_addr",
        "is_stream",
        "request_body",
        "request_id",
    ] {
        assert!(
            beta_failure.get(field).is_some(),
            "no {field} in {beta_failure}"
        );
    }
    assert_eq!(beta_failure["key_value"], BETA_KEY);
    assert_eq!(beta_failure["group_name"], "beta");
    assert_eq!(beta_failure["parent_group_name"], "");
    assert_eq!(beta_failure["request_type"], "final");
    assert_eq!(beta_failure["is_success"], false);
    assert_eq!(beta_failure["request_id"], t.beta_request_id.as_str());
    // Our addition: a client's X-Request-Id finds its row.
    let by_id = listed(s, &format!("request_id={}", t.beta_request_id)).await;
    assert_eq!(by_id.len(), 1, "{by_id:?}");
    assert_eq!(by_id[0]["id"], beta_failure["id"]);
    assert_eq!(count(s, "request_id=no-such-request").await, 0);
    assert!(
        beta_failure["error_message"]
            .as_str()
            .is_some_and(|m| m.contains("invalid api key provided")),
        "{beta_failure}"
    );
    let retry = &listed(s, "request_type=retry").await[0];
    assert_eq!(
        (
            retry["parent_group_name"].as_str(),
            retry["key_value"].as_str()
        ),
        (Some("agg"), Some(RETRY_BAD))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_window_is_inclusive_at_both_ends() {
    let t = scenario().await;
    let s = &t.server;
    let rows = listed(s, "").await;
    let alpha_newest = rows
        .iter()
        .find(|r| r["group_name"] == "alpha")
        .expect("alpha row");
    let beta_oldest = rows
        .iter()
        .rev()
        .find(|r| r["group_name"] == "beta")
        .expect("beta row");
    // The server's own timestamps, nanoseconds and all; `+` must be encoded in a URL.
    let stamp = |row: &Value| row["timestamp"].as_str().expect("ts").replace('+', "%2B");
    let after_alpha = listed(s, &format!("start_time={}", stamp(beta_oldest))).await;
    assert_eq!(after_alpha.len(), 2 + t.through_aggregate + t.retries);
    assert!(after_alpha.iter().all(|r| r["group_name"] != "alpha"));
    let up_to_alpha = listed(s, &format!("end_time={}", stamp(alpha_newest))).await;
    assert_eq!(up_to_alpha.len(), 3);
    assert!(up_to_alpha.iter().all(|r| r["group_name"] == "alpha"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_are_newest_first_and_cover_every_row_once() {
    let t = scenario().await;
    let s = &t.server;
    let total = 5 + t.through_aggregate + t.retries;
    let mut ids = Vec::new();
    let mut stamps = Vec::new();
    let pages = total.div_ceil(2);
    for page in 1..=pages {
        let body = data(
            s.api("GET", &format!("/api/logs?page={page}&page_size=2"), None)
                .await,
        );
        let p = &body["pagination"];
        assert_eq!(
            (p["page"].as_u64(), p["page_size"].as_u64()),
            (Some(page as u64), Some(2))
        );
        assert_eq!(p["total_items"].as_u64(), Some(total as u64));
        assert_eq!(p["total_pages"].as_u64(), Some(pages as u64));
        for item in body["items"].as_array().expect("items") {
            ids.push(item["id"].as_str().expect("id").to_string());
            let ts = chrono::DateTime::parse_from_rfc3339(item["timestamp"].as_str().expect("ts"))
                .expect("timestamp is RFC 3339");
            stamps.push(ts);
        }
    }
    assert_eq!(ids.len(), total);
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        total,
        "a row on two pages"
    );
    assert!(
        stamps.windows(2).all(|w| w[0] >= w[1]),
        "not newest first: {stamps:?}"
    );
    // The first page is where the newest request is: the aggregate's.
    let first = data(s.api("GET", "/api/logs", None).await);
    assert_eq!(
        first["pagination"]["page_size"], 15,
        "v1's default page size"
    );
    assert_eq!(first["items"][0]["parent_group_name"], "agg");
    let capped = data(s.api("GET", "/api/logs?page_size=5000", None).await);
    assert_eq!(capped["pagination"]["page_size"], 1000);
    let past = data(s.api("GET", "/api/logs?page=99", None).await);
    assert_eq!(past["items"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_filters_are_400_and_the_api_needs_auth() {
    let server = Server::start().await;
    for query in [
        "status_code=abc",
        "status_code=4.5",
        "start_time=yesterday",
        "end_time=2026-11-26",
        "is_success=maybe",
        "request_type=first",
    ] {
        for path in ["/api/logs", "/api/logs/export"] {
            let (status, body) = server.api("GET", &format!("{path}?{query}"), None).await;
            assert_eq!(status, 400, "{path}?{query}: {body}");
            assert_eq!(body["code"], "BAD_REQUEST", "{body}");
            assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
        }
    }
    let anonymous = server
        .client
        .get(server.url("/api/logs/export"))
        .send()
        .await
        .expect("request");
    assert_eq!(anonymous.status(), 401);
}

// ---- GET /api/logs/export ------------------------------------------------------------------

async fn export(server: &Server, query: &str) -> (reqwest::header::HeaderMap, Vec<String>) {
    // As the console does it: a download link with AUTH_KEY in the query.
    let resp = server
        .client
        .get(server.url(&format!("/api/logs/export?key={AUTH_KEY}&{query}")))
        .send()
        .await
        .expect("export");
    assert_eq!(resp.status(), 200);
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("csv");
    (headers, text.lines().map(String::from).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_is_one_csv_row_per_key_with_its_latest_status() {
    let t = scenario().await;
    let (headers, lines) = export(&t.server, "").await;
    assert_eq!(
        headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("text/csv; charset=utf-8")
    );
    let disposition = headers
        .get("content-disposition")
        .and_then(|v| v.to_str().ok())
        .expect("content-disposition");
    let name = disposition
        .strip_prefix("attachment; filename=log_keys_export_")
        .and_then(|rest| rest.strip_suffix(".csv"))
        .unwrap_or_else(|| panic!("{disposition}"));
    assert!(
        name.len() == 14 && name.bytes().all(|b| b.is_ascii_digit()),
        "{disposition}"
    );

    assert_eq!(lines[0], "key_value,group_name,status_code");
    let rows: BTreeSet<&str> = lines[1..].iter().map(String::as_str).collect();
    let want: BTreeSet<String> = [
        format!("{ALPHA_KEY},alpha,200"),
        // beta failed first, then succeeded: its latest log counts.
        format!("{BETA_KEY},beta,200"),
        format!("{RETRY_BAD},retrying,429"),
        format!("{RETRY_GOOD},retrying,200"),
    ]
    .into();
    assert_eq!(rows, want.iter().map(String::as_str).collect());
    assert_eq!(lines.len(), 5, "one row per key: {lines:?}");

    // Filtered: "which keys failed" — beta's latest failure, not its later success.
    let (_, failed) = export(&t.server, "is_success=false").await;
    let failed: BTreeSet<&str> = failed[1..].iter().map(String::as_str).collect();
    let want: BTreeSet<String> = [
        format!("{BETA_KEY},beta,401"),
        format!("{RETRY_BAD},retrying,429"),
    ]
    .into();
    assert_eq!(failed, want.iter().map(String::as_str).collect());

    let (_, nothing) = export(&t.server, "status_code=418").await;
    assert_eq!(nothing, ["key_value,group_name,status_code"]);
}

// ---- retention -----------------------------------------------------------------------------

fn stored_time(t: chrono::DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.9f+00:00").to_string()
}

/// Rows planted while the server is stopped; the pass at start removes the expired ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_at_start_deletes_rows_past_the_retention_days() {
    let mut first = Server::start().await;
    let exit = first.stop().await;
    assert!(exit.success(), "{exit:?}\n{}", first.logs());
    let now = Utc::now();
    {
        let db = first.db();
        for (id, age_days) in [
            ("old-1", 10),
            ("old-2", 8),
            ("old-3", 30),
            ("new-1", 1),
            ("new-2", 6),
        ] {
            db.execute(
                "INSERT INTO request_logs (id, timestamp, group_id, group_name, is_success, \
                 status_code, duration_ms, request_type, is_stream) \
                 VALUES (?1, ?2, 1, 'g', 1, 200, 5, 'final', 0)",
                rusqlite::params![id, stored_time(now - TimeDelta::days(age_days))],
            )
            .expect("plant log");
        }
        db.execute(
            "UPDATE system_settings SET setting_value = '7' \
             WHERE setting_key = 'request_log_retention_days'",
            [],
        )
        .expect("retention days");
    }
    let second = Server::start_in(&first.dir, &[]).await;
    second.wait_for_log("deleted 3 expired request logs").await;
    let ids: BTreeSet<String> = listed(&second, "")
        .await
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_string())
        .collect();
    assert_eq!(ids, ["new-1".to_string(), "new-2".to_string()].into());
}
