//! Step 2 behaviours beyond the basic proxy path: header rules (§2.7), aggregate groups
//! (§2.16), integration info (§2.17), CORS and security headers (§7), the client address behind
//! trusted proxies, request ids in the logs, and the stream idle timeout.

mod common;

use std::time::Duration;

use common::{AUTH_KEY, PROXY_KEY, Server};
use mock_upstream::MockUpstream;
use serde_json::{Value, json};

const CHAT: &str = "/v1/chat/completions";

fn chat_body() -> Value {
    json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
}

async fn aggregate(server: &Server, name: &str, members: &[(i64, i64)]) -> i64 {
    let body = json!({
        "name": name, "group_type": "aggregate", "channel_type": "openai",
        "proxy_keys": "sk-aggregate-client-key-123",
    });
    let (status, resp) = server.api("POST", "/api/groups", Some(body)).await;
    assert_eq!(status, 200, "{resp}");
    let id = resp["data"]["id"].as_i64().expect("id");
    let sub_groups: Vec<Value> = members
        .iter()
        .map(|(group_id, weight)| json!({"group_id": group_id, "weight": weight}))
        .collect();
    let path = format!("/api/groups/{id}/sub-groups");
    let (status, resp) = server
        .api("POST", &path, Some(json!({ "sub_groups": sub_groups })))
        .await;
    assert_eq!(status, 200, "{resp}");
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_7_header_rules_set_with_variables_and_remove_after_injection() {
    let mock = MockUpstream::start().await;
    let server = Server::start().await;
    let rules = json!([
        {"key": "api-key", "value": "${API_KEY}", "action": "set"},
        {"key": "Authorization", "action": "remove"},
        {"key": "X-Route", "value": "${GROUP_NAME}@${CLIENT_IP}", "action": "set"},
        {"key": "X-Sent-At", "value": "${TIMESTAMP_S}", "action": "set"},
        {"key": "X-Custom", "action": "remove"},
    ]);
    let id = server
        .create_group(
            "azure",
            "openai",
            &mock.url(),
            json!({"header_rules": rules}),
        )
        .await;
    server.add_keys(id, &["sk-azure-upstream-1"]).await;
    let response = server
        .client
        .post(server.url(&format!("/proxy/azure{CHAT}")))
        .bearer_auth(PROXY_KEY)
        .header("X-Custom", "from-client")
        .header("X-Other", "kept")
        .json(&chat_body())
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let seen = &mock.requests()[0];
    assert_eq!(seen.header("api-key"), Some("sk-azure-upstream-1"));
    assert_eq!(
        seen.header("authorization"),
        None,
        "removed after injection"
    );
    assert_eq!(seen.header("x-route"), Some("azure@127.0.0.1"));
    let sent_at: u64 = seen
        .header("x-sent-at")
        .expect("timestamp")
        .parse()
        .expect("seconds");
    assert!(sent_at > 1_700_000_000, "{sent_at}");
    assert_eq!(seen.header("x-custom"), None);
    assert_eq!(seen.header("x-other"), Some("kept"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_16_aggregate_spreads_by_weight_and_skips_members_without_keys() {
    let (mock_a, mock_b, mock_c) = (
        MockUpstream::start().await,
        MockUpstream::start().await,
        MockUpstream::start().await,
    );
    let mut server = Server::start().await;
    let a = server
        .create_group("member-a", "openai", &mock_a.url(), json!({}))
        .await;
    let b = server
        .create_group("member-b", "openai", &mock_b.url(), json!({}))
        .await;
    let c = server
        .create_group("member-c", "openai", &mock_c.url(), json!({}))
        .await;
    server.add_keys(a, &["sk-member-a-key"]).await;
    server.add_keys(b, &["sk-member-b-key"]).await;
    // c has no key: it must be skipped, never 503 while a or b can serve.
    let agg = aggregate(&server, "agg", &[(a, 3), (b, 1), (c, 5)]).await;

    for _ in 0..8 {
        let response = server
            .proxy_post_as(
                "sk-aggregate-client-key-123",
                &format!("/proxy/agg{CHAT}"),
                chat_body(),
            )
            .await;
        assert_eq!(response.status(), 200);
    }
    assert_eq!(
        (
            mock_a.request_count(),
            mock_b.request_count(),
            mock_c.request_count()
        ),
        (6, 2, 0)
    );
    assert_eq!(
        mock_a.requests()[0].upstream_key().as_deref(),
        Some("sk-member-a-key")
    );

    // A member's own proxy key does not open the aggregate.
    let (status, _) = server
        .api(
            "PUT",
            &format!("/api/groups/{a}"),
            Some(json!({"proxy_keys": "sk-member-only-key-1"})),
        )
        .await;
    assert_eq!(status, 200);
    let denied = server
        .proxy_post_as(
            "sk-member-only-key-1",
            &format!("/proxy/agg{CHAT}"),
            chat_body(),
        )
        .await;
    assert_eq!(denied.status(), 401);

    assert!(server.stop().await.success());
    let db = server.db();
    let (parents, parent_name): (i64, String) = db
        .query_row(
            "SELECT COUNT(*), MAX(parent_group_name) FROM request_logs WHERE parent_group_id = ?1",
            [agg],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("logs");
    assert_eq!((parents, parent_name.as_str()), (8, "agg"));
    let stats = |group: i64| -> i64 {
        db.query_row(
            "SELECT COALESCE(SUM(success_count), 0) FROM group_hourly_stats WHERE group_id = ?1",
            [group],
            |r| r.get(0),
        )
        .expect("stats")
    };
    assert_eq!(
        (stats(agg), stats(a), stats(b)),
        (8, 6, 2),
        "counted for member and parent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_16_aggregate_without_an_available_member_is_503() {
    let mock = MockUpstream::start().await;
    let server = Server::start().await;
    let a = server
        .create_group("empty-a", "openai", &mock.url(), json!({}))
        .await;
    aggregate(&server, "agg", &[(a, 1)]).await;
    let (status, body) = {
        let r = server
            .proxy_post_as(
                "sk-aggregate-client-key-123",
                &format!("/proxy/agg{CHAT}"),
                chat_body(),
            )
            .await;
        (r.status().as_u16(), r.json::<Value>().await.expect("json"))
    };
    assert_eq!(status, 503);
    assert_eq!(body["code"], "NO_KEYS_AVAILABLE");
    assert_eq!(body["message"], "No available sub-groups");
    assert_eq!(mock.request_count(), 0);
}

async fn add_member(server: &Server, agg: i64, group_id: i64, weight: i64) -> u16 {
    let body = json!({"sub_groups": [{"group_id": group_id, "weight": weight}]});
    let path = format!("/api/groups/{agg}/sub-groups");
    server.api("POST", &path, Some(body)).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_16_sub_group_constraints_and_listing() {
    let mock = MockUpstream::start().await;
    let server = Server::start().await;
    let a = server
        .create_group("m-a", "openai", &mock.url(), json!({}))
        .await;
    let claude = server
        .create_group("m-claude", "anthropic", &mock.url(), json!({}))
        .await;
    let custom = server
        .create_group(
            "m-custom",
            "openai",
            &mock.url(),
            json!({"validation_endpoint": "/v1/other"}),
        )
        .await;
    server
        .add_keys(a, &["sk-listed-key-1", "sk-listed-key-2"])
        .await;
    let agg = aggregate(&server, "agg", &[(a, 10)]).await;
    let add = |group_id: i64, weight: i64| add_member(&server, agg, group_id, weight);
    assert_eq!(add(claude, 1).await, 400, "another channel");
    assert_eq!(add(custom, 1).await, 400, "another validation endpoint");
    assert_eq!(add(a, 1).await, 409, "already a member");
    assert_eq!(add(9999, 1).await, 400, "no such group");
    assert_eq!(add(agg, 1).await, 400, "an aggregate cannot be a member");
    let path = format!("/api/groups/{agg}/sub-groups/{a}/weight");
    assert_eq!(
        server
            .api("PUT", &path, Some(json!({"weight": 1001})))
            .await
            .0,
        400
    );
    assert_eq!(
        server.api("PUT", &path, Some(json!({"weight": 7}))).await.0,
        200
    );

    let (status, list) = server
        .api("GET", &format!("/api/groups/{agg}/sub-groups"), None)
        .await;
    assert_eq!(status, 200);
    let member = &list["data"][0];
    assert_eq!(member["group"]["name"], "m-a");
    assert_eq!(
        (member["weight"].as_i64(), member["total_keys"].as_i64()),
        (Some(7), Some(2))
    );
    assert_eq!(member["active_keys"], 2);
    let (_, parents) = server
        .api(
            "GET",
            &format!("/api/groups/{a}/parent-aggregate-groups"),
            None,
        )
        .await;
    assert_eq!(parents["data"][0]["name"], "agg");
    assert_eq!(parents["data"][0]["weight"], 7);

    // A member's channel is frozen while it belongs to an aggregate.
    let (status, _) = server
        .api(
            "PUT",
            &format!("/api/groups/{a}"),
            Some(json!({"channel_type": "anthropic"})),
        )
        .await;
    assert_eq!(status, 400);
    let remove = format!("/api/groups/{agg}/sub-groups/{a}");
    assert_eq!(server.api("DELETE", &remove, None).await.0, 200);
    assert_eq!(server.api("DELETE", &remove, None).await.0, 404);
    let (status, _) = server
        .api(
            "PUT",
            &format!("/api/groups/{a}"),
            Some(json!({"channel_type": "anthropic"})),
        )
        .await;
    assert_eq!(status, 200, "free again once removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_17_integration_info_at_both_paths() {
    let mock = MockUpstream::start().await;
    let server = Server::start().await;
    server
        .create_group(
            "plain",
            "openai",
            &mock.url(),
            json!({"display_name": "Plain"}),
        )
        .await;
    server
        .create_group(
            "custom",
            "openai",
            &mock.url(),
            json!({"validation_endpoint": "/v1/x"}),
        )
        .await;
    let get = |path: String| {
        let client = server.client.clone();
        let url = server.url(&path);
        async move {
            let r = client.get(url).send().await.expect("request");
            (r.status().as_u16(), r.json::<Value>().await.expect("json"))
        }
    };
    let (status, all) = get(format!("/api/integration/info?key={PROXY_KEY}")).await;
    assert_eq!(status, 200, "{all}");
    let items = all["data"].as_array().expect("items");
    let plain = items.iter().find(|g| g["name"] == "plain").expect("plain");
    assert_eq!(
        (plain["channel_type"].as_str(), plain["path"].as_str()),
        (Some("openai"), Some("/proxy/plain"))
    );
    assert_eq!(plain["display_name"], "Plain");
    let custom = items
        .iter()
        .find(|g| g["name"] == "custom")
        .expect("custom");
    assert_eq!(
        (custom["channel_type"].as_str(), custom["path"].as_str()),
        (Some("custom"), Some("/proxy/custom/v1/x"))
    );

    let (status, one) = get(format!(
        "/proxy/custom/api/integration/info?key={PROXY_KEY}"
    ))
    .await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(one["data"][0]["path"], "/v1/x", "relative to the group");
    let (status, global) = get(format!("/api/integration/info?key={AUTH_KEY}")).await;
    assert_eq!(
        (status, global["data"].as_array().map(Vec::len)),
        (200, Some(2)),
        "global key sees all"
    );

    assert_eq!(
        get("/api/integration/info?key=sk-nobody".into()).await.0,
        400
    );
    assert_eq!(get("/api/integration/info".into()).await.0, 400);
    assert_eq!(
        get(format!("/proxy/nope/api/integration/info?key={PROXY_KEY}"))
            .await
            .0,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s7_cors_preflight_and_origin_echo_when_enabled() {
    let mock = MockUpstream::start().await;
    let env = [
        ("ENABLE_CORS", "true"),
        ("ALLOWED_ORIGINS", "https://app.example"),
        ("ALLOW_CREDENTIALS", "true"),
    ];
    let server = Server::start_with(&env).await;
    let id = server
        .create_group("g", "openai", &mock.url(), json!({}))
        .await;
    server.add_keys(id, &["sk-cors-upstream-1"]).await;

    let preflight = server
        .client
        .request(
            reqwest::Method::OPTIONS,
            server.url(&format!("/proxy/g{CHAT}")),
        )
        .header("Origin", "https://app.example")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .expect("preflight");
    assert_eq!(preflight.status(), 204);
    let h = preflight.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.example");
    assert_eq!(
        h["access-control-allow-methods"],
        "GET,POST,PUT,DELETE,OPTIONS"
    );
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert_eq!(
        mock.request_count(),
        0,
        "preflights never reach the upstream"
    );

    let allowed = server
        .client
        .post(server.url(&format!("/proxy/g{CHAT}")))
        .bearer_auth(PROXY_KEY)
        .header("Origin", "https://app.example")
        .json(&chat_body())
        .send()
        .await
        .expect("request");
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let other = server
        .client
        .get(server.url("/health"))
        .header("Origin", "https://evil.example")
        .send()
        .await
        .expect("request");
    assert!(other.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s7_security_headers_on_every_route_and_no_cors_by_default() {
    let mock = MockUpstream::start().await;
    let server = Server::start().await;
    let id = server
        .create_group("g", "openai", &mock.url(), json!({}))
        .await;
    server.add_keys(id, &["sk-sec-upstream-1"]).await;
    let responses = [
        server
            .proxy_post(&format!("/proxy/g{CHAT}"), chat_body())
            .await,
        server
            .proxy_post(&format!("/proxy/nope{CHAT}"), chat_body())
            .await,
        server
            .client
            .get(server.url("/health"))
            .header("Origin", "https://x.example")
            .send()
            .await
            .expect("health"),
        server
            .client
            .get(server.url("/api/groups"))
            .send()
            .await
            .expect("401"),
    ];
    for r in &responses {
        let h = r.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{}", r.url());
        assert_eq!(h["x-frame-options"], "SAMEORIGIN");
        assert_eq!(h["referrer-policy"], "strict-origin-when-cross-origin");
        assert!(
            h["permissions-policy"]
                .to_str()
                .expect("ascii")
                .contains("camera=()")
        );
        assert!(
            h.get("access-control-allow-origin").is_none(),
            "CORS is off by default"
        );
        assert_eq!(
            h.get_all("x-frame-options").iter().count(),
            1,
            "not duplicated"
        );
    }
}

/// `(source_ip, request_id)` of every logged attempt, read after `stop`.
fn logged_sources(server: &Server) -> Vec<(String, String)> {
    let db = server.db();
    let mut stmt = db
        .prepare("SELECT source_ip, request_id FROM request_logs")
        .expect("prepare");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .map(|r| r.expect("row"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_is_believed_from_trusted_proxies_only_and_request_ids_are_logged() {
    let mock = MockUpstream::start().await;
    for (trusted, expected_ip) in [(None, "203.0.113.9"), (Some(""), "127.0.0.1")] {
        let env: Vec<(&str, &str)> = trusted
            .map(|t| ("TRUSTED_PROXIES", t))
            .into_iter()
            .collect();
        let mut server = Server::start_with(&env).await;
        let id = server
            .create_group("g", "openai", &mock.url(), json!({}))
            .await;
        server.add_keys(id, &["sk-xff-upstream-1"]).await;
        let response = server
            .client
            .post(server.url(&format!("/proxy/g{CHAT}")))
            .bearer_auth(PROXY_KEY)
            .header("X-Forwarded-For", "203.0.113.9")
            .header("X-Request-Id", "req-from-client-42")
            .json(&chat_body())
            .send()
            .await
            .expect("request");
        assert_eq!(response.headers()["x-request-id"], "req-from-client-42");
        assert!(server.stop().await.success());
        assert_eq!(
            logged_sources(&server),
            [(expected_ip.to_string(), "req-from-client-42".to_string())],
            "TRUSTED_PROXIES={trusted:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_stream_is_cut_after_stream_idle_timeout() {
    let mock = MockUpstream::start().await;
    let mut server = Server::start().await;
    let config = json!({"config": {"stream_idle_timeout": 1}});
    let id = server
        .create_group("g", "openai", &mock.url(), config)
        .await;
    server.add_keys(id, &["sk-stall-upstream-1"]).await;
    let mut body = chat_body();
    body["stream"] = json!(true);
    let mut response = server
        .client
        .post(server.url(&format!("/proxy/g{CHAT}")))
        .bearer_auth(PROXY_KEY)
        .header("x-mock-gate", "never-opened")
        .json(&body)
        .send()
        .await
        .expect("stream");
    assert_eq!(response.status(), 200);
    let first = response
        .chunk()
        .await
        .expect("first chunk")
        .expect("some data");
    assert!(String::from_utf8_lossy(&first).contains("data:"));
    // The upstream never sends the rest; the gateway must end the stream on its own.
    let rest = tokio::time::timeout(Duration::from_secs(10), async {
        let mut outcome = Ok(());
        loop {
            match response.chunk().await {
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
        }
        outcome
    })
    .await;
    assert!(rest.is_ok(), "the stream was not cut within 10 s");
    assert!(
        rest.unwrap().is_err(),
        "a cut stream must not look complete (no final chunk)"
    );
    assert!(server.stop().await.success());
    let error: String = server
        .db()
        .query_row("SELECT error_message FROM request_logs", [], |r| r.get(0))
        .expect("log row");
    assert!(error.contains("stream_idle_timeout"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_13_concurrency_limit_is_429_with_retry_after_and_spares_the_admin_api() {
    let mock = MockUpstream::start().await;
    let server = Server::start_with(&[("MAX_CONCURRENT_REQUESTS", "1")]).await;
    let id = server
        .create_group("g", "openai", &mock.url(), json!({}))
        .await;
    server.add_keys(id, &["sk-limit-upstream-1"]).await;
    let held = {
        let client = server.client.clone();
        let url = server.url(&format!("/proxy/g{CHAT}"));
        tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(PROXY_KEY)
                .header("x-mock-gate", "release")
                .json(&chat_body())
                .send()
                .await
                .expect("held request")
                .status()
        })
    };
    mock.wait_requests(1).await;
    let refused = server
        .proxy_post(&format!("/proxy/g{CHAT}"), chat_body())
        .await;
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "1");
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["code"], "TOO_MANY_REQUESTS");
    let (status, _) = server.api("GET", "/api/groups", None).await;
    assert_eq!(status, 200, "the limit counts proxy requests only");
    mock.open_gate("release");
    assert_eq!(held.await.expect("join"), 200);
    let after = server
        .proxy_post(&format!("/proxy/g{CHAT}"), chat_body())
        .await;
    assert_eq!(after.status(), 200, "the slot is given back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_14_request_bodies_and_user_agents_are_logged_only_when_enabled() {
    let mock = MockUpstream::start().await;
    let mut server = Server::start().await;
    let on = json!({"config": {"enable_request_body_logging": true}});
    let logged = server
        .create_group("logged", "openai", &mock.url(), on)
        .await;
    let quiet = server
        .create_group("quiet", "openai", &mock.url(), json!({}))
        .await;
    server.add_keys(logged, &["sk-body-upstream-1"]).await;
    server.add_keys(quiet, &["sk-body-upstream-2"]).await;
    let big = "x".repeat(70_000);
    for group in ["logged", "quiet"] {
        let response = server
            .client
            .post(server.url(&format!("/proxy/{group}{CHAT}")))
            .bearer_auth(PROXY_KEY)
            .header("User-Agent", "test-agent/1.0")
            .json(&json!({"model": "m", "messages": [{"role": "user", "content": big}]}))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200);
    }
    assert!(server.stop().await.success());
    let db = server.db();
    let row = |group: &str| -> (String, String) {
        db.query_row(
            "SELECT request_body, user_agent FROM request_logs WHERE group_name = ?1",
            [group],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("log")
    };
    let (body, agent) = row("logged");
    assert_eq!(body.len(), 65_000, "truncated as v1 does");
    assert!(body.starts_with("{\""));
    assert_eq!(agent, "test-agent/1.0");
    assert_eq!(row("quiet"), (String::new(), String::new()));
}
