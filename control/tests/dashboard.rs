//! The dashboard and group statistics against the real binary (spec §3.3, console-api §3–4):
//! numbers for a known set of hourly stats and log rows planted while the server is stopped,
//! the chart's 24 hours, the group info card's windows, and v1's security warnings.
//!
//! Planted rows sit well inside their windows (hours from the edges), so an hour turning over
//! between planting and asking moves no row across a window edge.

mod common;

use std::collections::HashMap;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use common::{AUTH_KEY, Server};
use serde_json::{Value, json};

#[track_caller]
fn data(got: (u16, Value)) -> Value {
    assert_eq!(got.0, 200, "{}", got.1);
    assert_eq!(got.1["code"], 0, "{}", got.1);
    got.1["data"].clone()
}

#[track_caller]
fn assert_close(got: &Value, want: f64) {
    let got = got
        .as_f64()
        .unwrap_or_else(|| panic!("not a number: {got}"));
    assert!((got - want).abs() < 1e-9, "{got} != {want}");
}

fn stored_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.9f+00:00").to_string()
}

fn hour_start(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp().div_euclid(3600) * 3600, 0).expect("in range")
}

struct Planted {
    server: Server,
    /// The stopped first run; it owns the temporary directory both runs use.
    _first: Server,
    std_a: i64,
    std_b: i64,
    agg: i64,
    /// The current hour when the rows were planted.
    hour: DateTime<Utc>,
}

/// Groups std-a (3 keys, one invalid), std-b (2 keys), aggregate agg over std-a; then, with the
/// server stopped, hourly stats and log rows at known distances from now.
async fn planted() -> Planted {
    let mut first = Server::start().await;
    let upstream = "http://127.0.0.1:9";
    let std_a = first
        .create_group("std-a", "openai", upstream, json!({}))
        .await;
    let std_b = first
        .create_group("std-b", "openai", upstream, json!({}))
        .await;
    first
        .add_keys(std_a, &["sk-a-key-1", "sk-a-key-2", "sk-a-key-3"])
        .await;
    first.add_keys(std_b, &["sk-b-key-1", "sk-b-key-2"]).await;
    let agg = json!({
        "name": "agg", "group_type": "aggregate", "channel_type": "openai",
        "proxy_keys": "sk-aggregate-client-Kq7Wm2Xp9Lr4",
    });
    let agg = data(first.api("POST", "/api/groups", Some(agg)).await)["id"]
        .as_i64()
        .expect("id");
    let members = json!({"sub_groups": [{"group_id": std_a, "weight": 1}]});
    data(
        first
            .api(
                "POST",
                &format!("/api/groups/{agg}/sub-groups"),
                Some(members),
            )
            .await,
    );
    let exit = first.stop().await;
    assert!(exit.success(), "{exit:?}\n{}", first.logs());

    let now = Utc::now();
    let hour = hour_start(now);
    let db = first.db();
    db.execute(
        "UPDATE api_keys SET status = 'invalid' WHERE key_value = 'sk-a-key-3'",
        [],
    )
    .expect("invalidate a key");
    let stats = [
        // (group, hours before the current hour, success, failure)
        (std_a, 2, 30, 10),
        (agg, 2, 30, 10), // the same requests, counted again for the aggregate
        (std_b, 5, 20, 0),
        (std_b, 0, 2, 0),
        (std_a, 30, 15, 5),
        (std_a, 100, 1000, 0),
        (std_a, 400, 7, 7),
        (std_a, 800, 99, 99),
    ];
    for (group, hours_ago, success, failure) in stats {
        db.execute(
            "INSERT INTO group_hourly_stats (time, group_id, success_count, failure_count) \
             VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![
                stored_time(hour - TimeDelta::hours(hours_ago)),
                group,
                success,
                failure
            ],
        )
        .expect("plant hourly stats");
    }
    let logs = [
        // (minutes ago, request type, how many)
        (2, "final", 6),
        (4, "final", 3),
        (3, "retry", 2),
        (15, "final", 3),
        (15, "retry", 4),
        (40, "final", 5),
    ];
    let mut n = 0;
    for (minutes_ago, request_type, count) in logs {
        for _ in 0..count {
            n += 1;
            db.execute(
                "INSERT INTO request_logs (id, timestamp, group_id, group_name, is_success, \
                 status_code, duration_ms, request_type, is_stream) \
                 VALUES (?1, ?2, ?3, 'std-a', 1, 200, 5, ?4, 0)",
                rusqlite::params![
                    format!("planted-{n}"),
                    stored_time(now - TimeDelta::minutes(minutes_ago)),
                    std_a,
                    request_type
                ],
            )
            .expect("plant log");
        }
    }
    drop(db);
    let server = Server::start_in(&first.dir, &[]).await;
    Planted {
        server,
        _first: first,
        std_a,
        std_b,
        agg,
        hour,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_cards_from_known_rows() {
    let p = planted().await;
    let stats = data(p.server.api("GET", "/api/dashboard/stats", None).await);

    let keys = &stats["key_count"];
    assert_eq!(keys["value"], 4.0, "active keys: {keys}");
    assert_eq!(keys["sub_value"], 1, "invalid keys: {keys}");
    assert_eq!(keys["sub_value_tip"], "无效密钥数量", "zh-CN by default");

    // Final rows: 9 in the last 10 minutes, 3 in the 10 before; retries do not count.
    let rpm = &stats["rpm"];
    assert_close(&rpm["value"], 0.9);
    assert_close(&rpm["trend"], 200.0);
    assert_eq!(rpm["trend_is_growth"], true);

    // Last 24 h: std-a 40 (10 failed) + std-b 22; the aggregate's copy is not counted again.
    // The 24 h before: 20 (5 failed).
    let requests = &stats["request_count"];
    assert_eq!(requests["value"], 62.0, "{requests}");
    assert_close(&requests["trend"], (62.0 - 20.0) / 20.0 * 100.0);
    assert_eq!(requests["trend_is_growth"], true);
    let errors = &stats["error_rate"];
    let rate = 10.0 / 62.0 * 100.0;
    assert_close(&errors["value"], rate);
    assert_close(&errors["trend"], rate - 25.0);
    assert_eq!(
        errors["trend_is_growth"], true,
        "a falling error rate is good news"
    );

    let english = p
        .server
        .client
        .get(p.server.url("/api/dashboard/stats"))
        .bearer_auth(AUTH_KEY)
        .header("Accept-Language", "en-US,en;q=0.9")
        .send()
        .await
        .expect("stats")
        .json::<Value>()
        .await
        .expect("json");
    assert_eq!(
        english["data"]["key_count"]["sub_value_tip"],
        "Invalid Keys"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_has_24_hours_of_success_and_failure() {
    let p = planted().await;
    let chart = |query: String| {
        let server = &p.server;
        async move {
            data(
                server
                    .api("GET", &format!("/api/dashboard/chart{query}"), None)
                    .await,
            )
        }
    };
    let all = chart(String::new()).await;
    let labels: Vec<String> = all["labels"]
        .as_array()
        .expect("labels")
        .iter()
        .map(|l| l.as_str().expect("label").to_string())
        .collect();
    assert_eq!(labels.len(), 24);
    let hours: Vec<DateTime<Utc>> = labels
        .iter()
        .map(|l| DateTime::parse_from_rfc3339(l).expect("RFC 3339").to_utc())
        .collect();
    assert!(
        hours.windows(2).all(|w| w[1] - w[0] == TimeDelta::hours(1)),
        "{labels:?}"
    );
    assert!(
        hours[23] >= p.hour,
        "the last label is the current hour: {labels:?}"
    );
    let index: HashMap<&str, usize> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.as_str(), i))
        .collect();
    let at = |hours_ago: i64| {
        let label =
            (p.hour - TimeDelta::hours(hours_ago)).to_rfc3339_opts(SecondsFormat::Secs, true);
        *index
            .get(label.as_str())
            .unwrap_or_else(|| panic!("no label {label}: {labels:?}"))
    };

    let sets = all["datasets"].as_array().expect("datasets");
    assert_eq!(sets.len(), 2);
    assert_eq!(
        (&sets[0]["label"], &sets[0]["color"]),
        (&json!("成功请求"), &json!("rgba(10, 200, 110, 1)"))
    );
    assert_eq!(
        (&sets[1]["label"], &sets[1]["color"]),
        (&json!("失败请求"), &json!("rgba(255, 70, 70, 1)"))
    );
    let series = |set: &Value| -> Vec<i64> {
        set["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|v| v.as_i64().expect("count"))
            .collect()
    };
    let (success, failure) = (series(&sets[0]), series(&sets[1]));
    assert_eq!((success.len(), failure.len()), (24, 24));
    // All groups: std-a and std-b, without the aggregate's duplicate; nothing from 30 h ago.
    assert_eq!((success[at(2)], failure[at(2)]), (30, 10));
    assert_eq!((success[at(5)], failure[at(5)]), (20, 0));
    assert_eq!(success[at(0)], 2);
    assert_eq!(success.iter().sum::<i64>(), 52);
    assert_eq!(failure.iter().sum::<i64>(), 10);

    let of = |group: i64| chart(format!("?groupId={group}"));
    let agg = of(p.agg).await;
    assert_eq!(
        series(&agg["datasets"][0]).iter().sum::<i64>(),
        30,
        "the aggregate's own rows"
    );
    assert_eq!(series(&agg["datasets"][1]).iter().sum::<i64>(), 10);
    let b = of(p.std_b).await;
    assert_eq!(series(&b["datasets"][0]).iter().sum::<i64>(), 22);
    assert_eq!(series(&b["datasets"][1]).iter().sum::<i64>(), 0);
    assert_eq!(b["labels"], all["labels"]);

    let (status, body) = p
        .server
        .api("GET", "/api/dashboard/chart?groupId=abc", None)
        .await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_stats_windows_end_with_the_current_hour() {
    let p = planted().await;
    let stats = |id: i64| {
        let server = &p.server;
        async move {
            data(
                server
                    .api("GET", &format!("/api/groups/{id}/stats"), None)
                    .await,
            )
        }
    };
    let a = stats(p.std_a).await;
    assert_eq!(
        a["key_stats"],
        json!({"total_keys": 3, "active_keys": 2, "invalid_keys": 1})
    );
    assert_eq!(
        a["stats_24_hour"],
        json!({"total_requests": 40, "failed_requests": 10, "failure_rate": 0.25})
    );
    // + 30 h ago (20, 5 failed) + 100 h ago (1000): 15 / 1060 = 0.014150… → 0.0142.
    assert_eq!(
        a["stats_7_day"],
        json!({"total_requests": 1060, "failed_requests": 15, "failure_rate": 0.0142})
    );
    // + 400 h ago (14, 7 failed); 800 h ago is past 30 days: 22 / 1074 = 0.020484… → 0.0205.
    assert_eq!(
        a["stats_30_day"],
        json!({"total_requests": 1074, "failed_requests": 22, "failure_rate": 0.0205})
    );

    let b = stats(p.std_b).await;
    assert_eq!(
        b["key_stats"],
        json!({"total_keys": 2, "active_keys": 2, "invalid_keys": 0})
    );
    assert_eq!(
        b["stats_24_hour"],
        json!({"total_requests": 22, "failed_requests": 0, "failure_rate": 0.0}),
        "the current hour is inside the window"
    );

    let agg = stats(p.agg).await;
    assert_eq!(
        agg["key_stats"],
        json!({"total_keys": 0, "active_keys": 0, "invalid_keys": 0}),
        "an aggregate has no keys of its own"
    );
    assert_eq!(agg["stats_24_hour"]["total_requests"], 40);

    let (status, body) = p.server.api("GET", "/api/groups/999999/stats", None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("NOT_FOUND")),
        "{body}"
    );
    let (status, _) = p.server.api("GET", "/api/groups/x/stats", None).await;
    assert_eq!(status, 400);
}

// ---- security warnings ---------------------------------------------------------------------

/// `GET /api/dashboard/stats` as `key`, in English.
async fn warnings_as(server: &Server, key: &str) -> Vec<Value> {
    let body: Value = server
        .client
        .get(server.url("/api/dashboard/stats"))
        .bearer_auth(key)
        .header("Accept-Language", "en-US")
        .send()
        .await
        .expect("stats")
        .json()
        .await
        .expect("json");
    assert_eq!(body["code"], 0, "{body}");
    body["data"]["security_warnings"]
        .as_array()
        .cloned()
        .expect("security_warnings is an array")
}

fn summary(warnings: &[Value]) -> Vec<(String, String)> {
    warnings
        .iter()
        .map(|w| {
            assert!(
                w["suggestion"].as_str().is_some_and(|s| !s.is_empty()),
                "{w}"
            );
            (
                w["type"].as_str().unwrap_or("").to_string(),
                w["severity"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weak_keys_are_warned_about_as_v1_does() {
    // The harness's AUTH_KEY, sk-test-admin-…: 30 bytes and "admin" (first in v1's list before
    // "test"); it is also the seeded global proxy key.
    let server = Server::start().await;
    let weak = json!({"proxy_keys": "abc123"});
    server
        .create_group("weak", "openai", "http://127.0.0.1:9", weak)
        .await;
    let warnings = warnings_as(&server, AUTH_KEY).await;
    let pairs = |kind: &str, severity: &str| (kind.to_string(), severity.to_string());
    assert_eq!(
        summary(&warnings),
        [
            pairs("AUTH_KEY", "medium"),
            pairs("AUTH_KEY", "high"),
            pairs("ENCRYPTION_KEY", "high"),
            pairs("Global Proxy Key #1", "medium"),
            pairs("Global Proxy Key #1", "high"),
            pairs("Group Proxy Key [weak] #1", "high"),
            pairs("Group Proxy Key [weak] #1", "high"),
        ]
    );
    assert_eq!(
        warnings[0]["message"],
        "AUTH_KEY is short (30 characters), recommend 32+ characters"
    );
    assert_eq!(
        warnings[1]["message"],
        "AUTH_KEY contains common weak password patterns: admin"
    );
    assert_eq!(
        warnings[2]["message"],
        "ENCRYPTION_KEY is not set, sensitive data will be stored in plain text"
    );
    assert_eq!(
        warnings[5]["message"],
        "Group Proxy Key [weak] #1 is too short (6 characters), recommend at least 16 characters"
    );
    assert_eq!(
        warnings[6]["message"],
        "Group Proxy Key [weak] #1 contains common weak password patterns: abc"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strong_keys_raise_no_warning() {
    let auth = "Zq8vN3kLp0Xw7Rt5Hj4mW9qT2sLx8Vn6!";
    let server = Server::start_with(&[
        ("AUTH_KEY", auth),
        ("ENCRYPTION_KEY", "Vb7#Rq2wLx9$Tz4mNc8@Pk3jHs6!Gd1f"),
    ])
    .await;
    let body = json!({
        "name": "strong", "channel_type": "openai", "test_model": "m",
        "upstreams": [{"url": "http://127.0.0.1:9", "weight": 1}],
        "proxy_keys": "Wd5!Qm8zRt2#Lp7vXk4$Jn9cHs3&Fb6g,Ty6@Ze1rMq8!Vu3xKp5$Lw9nJc2#Hd4s",
    });
    let resp = server
        .client
        .post(server.url("/api/groups"))
        .bearer_auth(auth)
        .json(&body)
        .send()
        .await
        .expect("create group");
    assert_eq!(resp.status(), 200);
    let warnings = warnings_as(&server, auth).await;
    assert_eq!(warnings, Vec::<Value>::new());
}
