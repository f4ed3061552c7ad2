//! The proxy contract end to end (spec §2.1–2.6, 2.10–2.13): the real binary in front of the
//! recording mock upstream. Each test is named after the spec section and the behaviour it
//! checks; what the upstream received is read back from the mock, what the client sees from the
//! response, and what was logged from the database after a graceful stop.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{AUTH_KEY, PROXY_KEY, Server, WAIT, free_port, raw_exchange, within};
use mock_upstream::MockUpstream;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CHAT: &str = "/proxy/g/v1/chat/completions";

fn chat_body() -> Value {
    json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
}

/// Starts a server with an OpenAI group `g` on `mock` holding `keys`; `extra` adds group fields
/// (e.g. `config`).
async fn openai_group(mock: &MockUpstream, keys: &[&str], extra: Value) -> (Server, i64) {
    let server = Server::start().await;
    let id = server.create_group("g", "openai", &mock.url(), extra).await;
    if !keys.is_empty() {
        server.add_keys(id, keys).await;
    }
    (server, id)
}

/// Request headers as (name, value) pairs.
type Headers<'a> = &'a [(&'a str, &'a str)];

/// POSTs `body` to `path` with exactly `headers`: no proxy key unless they (or the path) carry
/// one.
async fn post_as(
    server: &Server,
    path: &str,
    headers: Headers<'_>,
    body: &Value,
) -> reqwest::Response {
    let request = server
        .client
        .post(server.url(path))
        .timeout(WAIT)
        .json(body);
    let request = headers
        .iter()
        .fold(request, |r, (name, value)| r.header(*name, *value));
    request.send().await.expect("proxy request")
}

/// POSTs `body` to `path` with PROXY_KEY as Bearer and the extra `headers`.
async fn post(
    server: &Server,
    path: &str,
    headers: Headers<'_>,
    body: &Value,
) -> reqwest::Response {
    let bearer = format!("Bearer {PROXY_KEY}");
    let all: Vec<(&str, &str)> = [("Authorization", bearer.as_str())]
        .into_iter()
        .chain(headers.iter().copied())
        .collect();
    post_as(server, path, &all, body).await
}

/// A chat completion on group `g` with PROXY_KEY and the extra `headers`.
async fn chat(server: &Server, headers: Headers<'_>) -> reqwest::Response {
    post(server, CHAT, headers, &chat_body()).await
}

/// Status and body text of a whole response.
async fn status_and_text(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    (
        status,
        within("the response body", response.text())
            .await
            .expect("response body"),
    )
}

/// Status and body of a whole response parsed as JSON.
async fn status_and_json(response: reqwest::Response) -> (u16, Value) {
    let (status, text) = status_and_text(response).await;
    let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, json)
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().expect("ASCII header"))
}

/// The upstream key of every request the mock received, in order.
fn upstream_keys(mock: &MockUpstream) -> Vec<String> {
    mock.requests()
        .iter()
        .map(|r| r.upstream_key().unwrap_or_default())
        .collect()
}

/// `(status_code, request_type)` of every logged attempt; read after `stop` (logs are flushed
/// on graceful shutdown).
fn logged_attempts(server: &Server) -> Vec<(i64, String)> {
    let db = server.db();
    let mut query = db
        .prepare("SELECT status_code, request_type FROM request_logs")
        .expect("prepare");
    query
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .expect("query request_logs")
        .map(|row| row.expect("row"))
        .collect()
}

// §2.1, §2.2, §2.12: what reaches the upstream and what comes back.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_2_query_key_is_stripped_and_client_auth_removed() {
    let mock = MockUpstream::start().await;
    let (server, _) = openai_group(&mock, &["sk-upstream-1"], json!({})).await;
    // Odd spacing and field order: the body must arrive byte for byte.
    let body = r#"{"model":"gpt-4o-mini",  "messages":[{"role":"user","content":"hi"}],"n":1}"#;
    let url = server.url(&format!("{CHAT}?a=1&key={PROXY_KEY}&b=x%20y"));
    let response = server
        .client
        .post(url)
        .timeout(WAIT)
        .header("Authorization", format!("Bearer {PROXY_KEY}"))
        .header("X-Api-Key", PROXY_KEY)
        .header("X-Goog-Api-Key", PROXY_KEY)
        .header("X-Custom", "kept")
        .header("X-Request-Id", "client-req-42")
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .expect("proxy request");

    assert_eq!(header(&response, "x-request-id"), Some("client-req-42"));
    let (status, reply) = status_and_json(response).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["id"], "chatcmpl-mock");
    assert_eq!(
        reply["choices"][0]["message"]["content"],
        "chunk0 chunk1 chunk2"
    );

    let sent = mock.requests();
    assert_eq!(sent.len(), 1);
    let sent = &sent[0];
    assert_eq!(sent.method, "POST");
    assert_eq!(sent.path, "/v1/chat/completions?a=1&b=x%20y");
    let auth: Vec<&str> = sent.header_values("authorization").collect();
    assert_eq!(auth, ["Bearer sk-upstream-1"]);
    assert_eq!(sent.header("x-api-key"), None);
    assert_eq!(sent.header("x-goog-api-key"), None);
    assert_eq!(sent.header("x-custom"), Some("kept"));
    assert_eq!(sent.body_text(), body);
    let leaked =
        sent.path.contains(PROXY_KEY) || sent.headers.iter().any(|(_, v)| v.contains(PROXY_KEY));
    assert!(!leaked, "the proxy key reached the upstream: {sent:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_12_status_and_body_pass_through_with_a_request_id() {
    let mock = MockUpstream::start().await;
    let (server, _) = openai_group(&mock, &["sk-upstream-1"], json!({})).await;
    let forced = [
        ("x-mock-status", "201"),
        ("x-mock-body", r#"{"created":true,"n":[1,2]}"#),
    ];

    let first = chat(&server, &forced).await;
    let first_id = header(&first, "x-request-id")
        .expect("X-Request-Id")
        .to_string();
    let (status, text) = status_and_text(first).await;
    assert_eq!(
        (status, text.as_str()),
        (201, r#"{"created":true,"n":[1,2]}"#)
    );

    let second = chat(&server, &[]).await;
    let second_id = header(&second, "x-request-id")
        .expect("X-Request-Id")
        .to_string();
    assert_eq!(second.status(), 200);
    assert!(
        !first_id.is_empty() && first_id != second_id,
        "{first_id} / {second_id}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_2_proxy_key_accepted_in_all_four_forms_and_the_global_key() {
    let mock = MockUpstream::start().await;
    let (server, _) = openai_group(&mock, &["sk-upstream-1"], json!({})).await;
    let (bearer, global) = (format!("Bearer {PROXY_KEY}"), format!("Bearer {AUTH_KEY}"));
    let query = format!("{CHAT}?key={PROXY_KEY}");
    let forms: [(&str, &str, Headers); 5] = [
        ("query", &query, &[]),
        ("bearer", CHAT, &[("Authorization", &bearer)]),
        ("x-api-key", CHAT, &[("X-Api-Key", PROXY_KEY)]),
        ("x-goog-api-key", CHAT, &[("X-Goog-Api-Key", PROXY_KEY)]),
        ("global key (AUTH_KEY)", CHAT, &[("Authorization", &global)]),
    ];
    for (form, path, headers) in forms {
        let response = post_as(&server, path, headers, &chat_body()).await;
        let (status, body) = status_and_text(response).await;
        assert_eq!(status, 200, "{form}: {body}");
    }
    assert_eq!(upstream_keys(&mock), vec!["sk-upstream-1"; 5]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_2_missing_or_wrong_proxy_key_is_401() {
    let mock = MockUpstream::start().await;
    let (server, _) = openai_group(&mock, &["sk-upstream-1"], json!({})).await;
    let cases: [(&str, &str, Headers); 5] = [
        ("no key", CHAT, &[]),
        (
            "wrong bearer",
            CHAT,
            &[("Authorization", "Bearer sk-wrong")],
        ),
        (
            "wrong query key",
            "/proxy/g/v1/chat/completions?key=sk-wrong",
            &[],
        ),
        ("wrong x-api-key", CHAT, &[("X-Api-Key", "sk-wrong")]),
        (
            "upstream key as proxy key",
            CHAT,
            &[("Authorization", "Bearer sk-upstream-1")],
        ),
    ];
    for (case, path, headers) in cases {
        let (status, body) =
            status_and_json(post_as(&server, path, headers, &chat_body()).await).await;
        assert_eq!(status, 401, "{case}");
        let expected = json!({"code": "UNAUTHORIZED", "message": "Authentication failed"});
        assert_eq!(body, expected, "{case}");
    }
    assert_eq!(mock.request_count(), 0);
}

/// Deliberate difference: v1 answers an unknown group with 500 INTERNAL_SERVER_ERROR.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_1_unknown_group_is_404_not_found() {
    let mock = MockUpstream::start().await;
    let (server, _) = openai_group(&mock, &["sk-upstream-1"], json!({})).await;
    let response = post(
        &server,
        "/proxy/nosuchgroup/v1/chat/completions",
        &[],
        &chat_body(),
    )
    .await;
    let (status, body) = status_and_json(response).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["code"], "NOT_FOUND");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("nosuchgroup")),
        "{body}"
    );
    assert_eq!(mock.request_count(), 0);
}

// §2.4, §2.5: key rotation and upstream choice.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_4_keys_rotate_round_robin() {
    let mock = MockUpstream::start().await;
    let keys = ["sk-rr-1", "sk-rr-2", "sk-rr-3"];
    let (server, _) = openai_group(&mock, &keys, json!({})).await;
    for _ in 0..6 {
        assert_eq!(chat(&server, &[]).await.status(), 200);
    }
    let seen = upstream_keys(&mock);
    let mut first_round = seen[..3].to_vec();
    first_round.sort();
    assert_eq!(first_round, keys, "each key once per round: {seen:?}");
    assert_eq!(
        seen[3..],
        seen[..3],
        "the second round repeats the first: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_5_upstreams_are_picked_by_smooth_weighted_round_robin() {
    let (heavy, light, unused) = (
        MockUpstream::start().await,
        MockUpstream::start().await,
        MockUpstream::start().await,
    );
    let server = Server::start().await;
    let upstreams = json!([
        {"url": heavy.url(), "weight": 3},
        {"url": light.url(), "weight": 1},
        {"url": unused.url(), "weight": 0},
    ]);
    let id = server
        .create_group("g", "openai", &heavy.url(), json!({"upstreams": upstreams}))
        .await;
    server.add_keys(id, &["sk-upstream-1"]).await;
    for _ in 0..8 {
        assert_eq!(chat(&server, &[]).await.status(), 200);
    }
    let counts = (
        heavy.request_count(),
        light.request_count(),
        unused.request_count(),
    );
    assert_eq!(counts, (6, 2, 0), "requests per upstream (weights 3, 1, 0)");
}

// §2.6: how each channel carries the upstream key.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_6_anthropic_key_goes_in_x_api_key_with_forced_version() {
    let mock = MockUpstream::start().await;
    let server = Server::start().await;
    let id = server
        .create_group("claude", "anthropic", &mock.url(), json!({}))
        .await;
    server.add_keys(id, &["sk-ant-upstream"]).await;
    let body = json!({"model": "claude-3-5-sonnet-latest", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
    let response = server
        .client
        .post(server.url("/proxy/claude/v1/messages"))
        .timeout(WAIT)
        .header("x-api-key", PROXY_KEY)
        .header("anthropic-version", "2020-01-01")
        .header("anthropic-beta", "tools-2024")
        .json(&body)
        .send()
        .await
        .expect("proxy request");
    let (status, reply) = status_and_json(response).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["type"], "message");

    let sent = &mock.requests()[0];
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(
        sent.header_values("x-api-key").collect::<Vec<_>>(),
        ["sk-ant-upstream"]
    );
    assert_eq!(
        sent.header_values("anthropic-version").collect::<Vec<_>>(),
        ["2023-06-01"]
    );
    assert_eq!(sent.header("anthropic-beta"), Some("tools-2024"));
    assert_eq!(sent.header("authorization"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_6_gemini_native_key_in_query_and_openai_compat_path_bearer() {
    let mock = MockUpstream::start().await;
    let server = Server::start().await;
    let id = server
        .create_group("gem", "gemini", &mock.url(), json!({}))
        .await;
    server.add_keys(id, &["AIza-upstream-1"]).await;
    let contents = json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]});

    let native = "/proxy/gem/v1beta/models/gemini-2.0-flash:streamGenerateContent";
    let url = server.url(&format!("{native}?alt=sse&key={PROXY_KEY}"));
    let response = server
        .client
        .post(url)
        .timeout(WAIT)
        .json(&contents)
        .send()
        .await
        .expect("request");
    let (status, text) = status_and_text(response).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.starts_with("data: "), "{text}");

    let response = server
        .client
        .post(server.url("/proxy/gem/v1beta/models/gemini-2.0-flash:generateContent"))
        .timeout(WAIT)
        .header("x-goog-api-key", PROXY_KEY)
        .json(&contents)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);

    let compat = post(
        &server,
        "/proxy/gem/v1beta/openai/chat/completions",
        &[],
        &chat_body(),
    )
    .await;
    assert_eq!(compat.status(), 200);

    let sent = mock.requests();
    assert_eq!(sent.len(), 3);
    assert_eq!(
        sent[0].path,
        "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse&key=AIza-upstream-1"
    );
    assert_eq!(
        sent[1].path,
        "/v1beta/models/gemini-2.0-flash:generateContent?key=AIza-upstream-1"
    );
    for native in &sent[..2] {
        assert_eq!(native.header("authorization"), None);
        assert_eq!(native.header("x-goog-api-key"), None);
    }
    assert_eq!(sent[2].path, "/v1beta/openai/chat/completions");
    assert_eq!(
        sent[2].header("authorization"),
        Some("Bearer AIza-upstream-1")
    );
    assert_eq!(sent[2].query("key"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_6_openai_response_channel_uses_bearer_on_v1_responses() {
    let mock = MockUpstream::start().await;
    let server = Server::start().await;
    let id = server
        .create_group("resp", "openai-response", &mock.url(), json!({}))
        .await;
    server.add_keys(id, &["sk-resp-upstream"]).await;
    let response = post(
        &server,
        "/proxy/resp/v1/responses",
        &[],
        &json!({"model": "gpt-4o", "input": "hi"}),
    )
    .await;
    let (status, reply) = status_and_json(response).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["object"], "response");
    let sent = &mock.requests()[0];
    assert_eq!(sent.path, "/v1/responses");
    assert_eq!(
        sent.header("authorization"),
        Some("Bearer sk-resp-upstream")
    );
}

// §2.3, §2.12: streaming.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_12_stream_events_reach_the_client_before_the_upstream_finishes() {
    let mock = MockUpstream::start().await;
    let (server, _) = openai_group(&mock, &["sk-upstream-1"], json!({})).await;
    let body = json!({"model": "gpt-4o-mini", "stream": true, "messages": []});
    let mut response = post(&server, CHAT, &[("x-mock-gate", "rest")], &body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-type"), Some("text/event-stream"));
    assert_eq!(header(&response, "cache-control"), Some("no-cache"));
    assert_eq!(header(&response, "x-accel-buffering"), Some("no"));

    // The mock holds everything after the first event until the gate opens: receiving that
    // event now proves it was relayed as it arrived, not buffered.
    let mut received = String::new();
    within("the first event while the gate is closed", async {
        while !received.contains(r#""content":"chunk0""#) {
            let chunk = response
                .chunk()
                .await
                .expect("read")
                .expect("stream ended early");
            received.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await;
    assert!(!received.contains("chunk1"), "{received}");

    mock.open_gate("rest");
    within("the rest of the stream", async {
        while let Some(chunk) = response.chunk().await.expect("read") {
            received.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await;
    assert!(received.contains(r#""content":" chunk2""#), "{received}");
    assert!(received.ends_with("data: [DONE]\n\n"), "{received}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_3_streams_are_detected_by_body_query_accept_and_gemini_method() {
    let mock = MockUpstream::start().await;
    let (server, _) = openai_group(&mock, &["sk-upstream-1"], json!({})).await;
    let gemini = server
        .create_group("gem", "gemini", &mock.url(), json!({}))
        .await;
    server.add_keys(gemini, &["AIza-upstream-1"]).await;
    let streamed = json!({"model": "m", "stream": true});
    let plain = chat_body();
    let contents = json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]});
    let gemini_stream = "/proxy/gem/v1beta/models/gemini-2.0-flash:streamGenerateContent";
    let cases: [(&str, &str, Headers, &Value); 4] = [
        ("body \"stream\":true", CHAT, &[], &streamed),
        (
            "query stream=true",
            "/proxy/g/v1/chat/completions?stream=true",
            &[],
            &plain,
        ),
        (
            "Accept: text/event-stream",
            CHAT,
            &[("accept", "text/event-stream")],
            &plain,
        ),
        (
            "Gemini :streamGenerateContent",
            gemini_stream,
            &[],
            &contents,
        ),
    ];
    for (case, path, headers, body) in cases {
        let response = post(&server, path, headers, body).await;
        assert_eq!(response.status(), 200, "{case}");
        assert_eq!(
            header(&response, "content-type"),
            Some("text/event-stream"),
            "{case}"
        );
        assert_eq!(
            header(&response, "cache-control"),
            Some("no-cache"),
            "{case}"
        );
        assert_eq!(header(&response, "x-accel-buffering"), Some("no"), "{case}");
        status_and_text(response).await;
    }

    let response = chat(&server, &[]).await;
    assert_eq!(
        header(&response, "content-type"),
        Some("application/json"),
        "not a stream"
    );
    assert_eq!(header(&response, "x-accel-buffering"), None, "not a stream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_12_close_delimited_upstream_body_arrives_complete_and_rechunked() {
    let mock = MockUpstream::start().await;
    let (server, _) = openai_group(&mock, &["sk-upstream-1"], json!({})).await;
    let close = [("x-mock-framing", "close")];

    let stream = json!({"model": "m", "stream": true, "messages": []});
    let response = post(&server, CHAT, &close, &stream).await;
    assert_eq!(header(&response, "transfer-encoding"), Some("chunked"));
    let (status, text) = status_and_text(response).await;
    assert_eq!(status, 200);
    assert!(
        text.contains(r#""content":" chunk2""#) && text.ends_with("data: [DONE]\n\n"),
        "{text}"
    );

    let response = chat(&server, &close).await;
    assert_eq!(header(&response, "transfer-encoding"), Some("chunked"));
    let (status, reply) = status_and_json(response).await;
    assert_eq!(status, 200);
    assert_eq!(
        reply["choices"][0]["message"]["content"],
        "chunk0 chunk1 chunk2"
    );

    // The closed upstream connections were not pooled: the next request still works.
    assert_eq!(chat(&server, &[]).await.status(), 200);
}

// §2.10: retry and failover.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_10_failed_key_fails_over_to_the_next_key() {
    let mock = MockUpstream::start().await;
    let (server, _) = openai_group(&mock, &["sk-revoked", "sk-live"], json!({})).await;
    mock.fail_key("sk-revoked", 401, r#"{"error":{"message":"revoked"}}"#);
    // Round-robin starts on either key; within two requests one starts on the revoked key.
    for _ in 0..2 {
        mock.clear();
        let (status, reply) = status_and_json(chat(&server, &[]).await).await;
        assert_eq!(status, 200, "{reply}");
        assert_eq!(reply["id"], "chatcmpl-mock");
        if mock.request_count() == 2 {
            assert_eq!(upstream_keys(&mock), ["sk-revoked", "sk-live"]);
            return;
        }
        assert_eq!(upstream_keys(&mock), ["sk-live"]);
    }
    panic!("no request started on the revoked key in two requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_10_without_retries_the_upstream_error_json_is_returned_verbatim() {
    let mock = MockUpstream::start().await;
    let (server, _) = openai_group(
        &mock,
        &["sk-revoked"],
        json!({"config": {"max_retries": 0}}),
    )
    .await;
    let error =
        r#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error"}}"#;
    mock.fail_key("sk-revoked", 401, error);
    let (status, body) = status_and_text(chat(&server, &[]).await).await;
    assert_eq!((status, body.as_str()), (401, error));
    assert_eq!(mock.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_10_non_json_upstream_error_becomes_upstream_error_envelope() {
    let mock = MockUpstream::start().await;
    let (server, _) = openai_group(
        &mock,
        &["sk-upstream-1"],
        json!({"config": {"max_retries": 0}}),
    )
    .await;
    let forced = [
        ("x-mock-status", "503"),
        ("x-mock-body", "upstream overloaded, try later"),
    ];
    let (status, body) = status_and_json(chat(&server, &forced).await).await;
    assert_eq!(status, 503);
    assert_eq!(
        body,
        json!({"code": "UPSTREAM_ERROR", "message": "upstream overloaded, try later"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_10_upstream_key_is_redacted_from_error_messages() {
    let mock = MockUpstream::start().await;
    let key = "sk-echoed-Secret-0123456789";
    let (server, _) = openai_group(&mock, &[key], json!({"config": {"max_retries": 0}})).await;
    let echo = format!("key {key} is not valid here");
    let forced = [("x-mock-status", "403"), ("x-mock-body", echo.as_str())];
    let (status, body) = status_and_json(chat(&server, &forced).await).await;
    assert_eq!(status, 403);
    let expected =
        json!({"code": "UPSTREAM_ERROR", "message": "key sk-e****6789 is not valid here"});
    assert_eq!(body, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_10_upstream_404_is_passed_through_without_retry_or_penalty() {
    let mock = MockUpstream::start().await;
    let (server, id) = openai_group(&mock, &["sk-upstream-1", "sk-upstream-2"], json!({})).await;
    let error = r#"{"error":{"message":"The model does not exist"}}"#;
    let (status, body) =
        status_and_text(chat(&server, &[("x-mock-status", "404"), ("x-mock-body", error)]).await)
            .await;
    assert_eq!((status, body.as_str()), (404, error));
    assert_eq!(
        mock.request_count(),
        1,
        "404 is not in the default failover codes"
    );
    for key in server.list_keys(id).await {
        assert_eq!(
            (&key["status"], &key["failure_count"]),
            (&json!("active"), &json!(0)),
            "{key}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_10_group_failover_codes_override_the_default() {
    let mock = MockUpstream::start().await;
    let config = json!({"config": {"failover_status_codes": "500"}});
    let (server, id) = openai_group(&mock, &["sk-upstream-1", "sk-upstream-2"], config).await;
    let error = r#"{"error":{"message":"Rate limit reached"}}"#;
    let (status, body) =
        status_and_text(chat(&server, &[("x-mock-status", "429"), ("x-mock-body", error)]).await)
            .await;
    assert_eq!((status, body.as_str()), (429, error));
    assert_eq!(
        mock.request_count(),
        1,
        "429 is not in the group's failover codes"
    );
    for key in server.list_keys(id).await {
        assert_eq!(key["failure_count"], 0, "{key}");
    }
}

// §2.11: failure counting and blacklisting.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_11_key_is_blacklisted_at_the_threshold_and_never_picked_again() {
    let mock = MockUpstream::start().await;
    let config = json!({"config": {"blacklist_threshold": 2}});
    let (server, id) = openai_group(&mock, &["sk-bad", "sk-good-1", "sk-good-2"], config).await;
    mock.fail_key("sk-bad", 401, r#"{"error":{"message":"revoked"}}"#);
    let bad_attempts = |mock: &MockUpstream| {
        upstream_keys(mock)
            .iter()
            .filter(|k| *k == "sk-bad")
            .count()
    };
    for _ in 0..12 {
        if bad_attempts(&mock) == 2 {
            break;
        }
        assert_eq!(chat(&server, &[]).await.status(), 200);
    }
    assert_eq!(
        bad_attempts(&mock),
        2,
        "the bad key fails twice within 12 requests"
    );

    mock.clear();
    for _ in 0..9 {
        assert_eq!(chat(&server, &[]).await.status(), 200);
    }
    assert_eq!(
        bad_attempts(&mock),
        0,
        "blacklisted key picked again: {:?}",
        upstream_keys(&mock)
    );
    let bad = server.key_entry(id, "sk-bad").await;
    assert_eq!(
        (&bad["status"], &bad["failure_count"]),
        (&json!("invalid"), &json!(2)),
        "{bad}"
    );
    let good = server.key_entry(id, "sk-good-1").await;
    assert_eq!(
        (&good["status"], &good["failure_count"]),
        (&json!("active"), &json!(0)),
        "{good}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_11_threshold_zero_never_blacklists() {
    let mock = MockUpstream::start().await;
    let config = json!({"config": {"blacklist_threshold": 0}});
    let (server, id) = openai_group(&mock, &["sk-bad", "sk-good"], config).await;
    mock.fail_key("sk-bad", 401, r#"{"error":{"message":"revoked"}}"#);
    for _ in 0..6 {
        assert_eq!(chat(&server, &[]).await.status(), 200);
    }
    let failures = upstream_keys(&mock)
        .iter()
        .filter(|k| *k == "sk-bad")
        .count();
    assert!(
        failures >= 5,
        "the bad key keeps being picked: {:?}",
        upstream_keys(&mock)
    );
    let bad = server.key_entry(id, "sk-bad").await;
    assert_eq!(
        (&bad["status"], &bad["failure_count"]),
        (&json!("active"), &json!(failures)),
        "{bad}"
    );
}

// §2.4, §2.10, §2.13: gateway-side errors.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_4_group_without_active_keys_is_503_no_keys_available() {
    let mock = MockUpstream::start().await;
    let (server, _) = openai_group(&mock, &[], json!({})).await;
    let (status, body) = status_and_json(chat(&server, &[]).await).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], "NO_KEYS_AVAILABLE");
    assert_eq!(mock.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_10_all_keys_failing_returns_the_last_upstream_error_after_all_attempts() {
    let mock = MockUpstream::start().await;
    let config = json!({"config": {"max_retries": 2, "blacklist_threshold": 0}});
    let (server, _) = openai_group(&mock, &["sk-down-a", "sk-down-b"], config).await;
    let answers = [
        ("sk-down-a", 500, r#"{"error":{"message":"a is down"}}"#),
        ("sk-down-b", 502, r#"{"error":{"message":"b is down"}}"#),
    ];
    for (key, status, body) in answers {
        mock.fail_key(key, status, body);
    }
    let (status, body) = status_and_text(chat(&server, &[]).await).await;
    let keys = upstream_keys(&mock);
    assert_eq!(keys.len(), 3, "max_retries + 1 attempts: {keys:?}");
    assert!(
        keys[0] != keys[1] && keys[1] != keys[2],
        "each retry takes the next key: {keys:?}"
    );
    let (_, last_status, last_body) = answers
        .iter()
        .find(|(k, _, _)| *k == keys[2])
        .expect("known key");
    assert_eq!((status, body.as_str()), (*last_status, *last_body));
}

/// Deliberate difference: v1 answers 503 "no keys" once the failures used up the pool; we
/// answer with what the upstream said on the attempt that left no active key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_11_failure_that_leaves_no_active_key_answers_with_the_upstream_error() {
    let mock = MockUpstream::start().await;
    let config = json!({"config": {"max_retries": 3, "blacklist_threshold": 1}});
    let (mut server, _) = openai_group(&mock, &["sk-gone-a", "sk-gone-b"], config).await;
    let body = r#"{"error":{"message":"invalid api key"}}"#;
    mock.fail_key("sk-gone-a", 401, body);
    mock.fail_key("sk-gone-b", 401, body);
    let (status, text) = status_and_text(chat(&server, &[]).await).await;
    assert_eq!((status, text.as_str()), (401, body));
    assert_eq!(
        upstream_keys(&mock).len(),
        2,
        "one attempt per key, then no key is left"
    );

    assert!(server.stop().await.success());
    let mut attempts = logged_attempts(&server);
    attempts.sort();
    assert_eq!(
        attempts,
        [(401, "final".to_string()), (401, "retry".to_string())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_10_transport_error_is_500_upstream_error_without_the_key() {
    let mut server = Server::start().await;
    let closed = format!("http://127.0.0.1:{}", free_port());
    let config = json!({"config": {"blacklist_threshold": 0}});
    let id = server.create_group("g", "openai", &closed, config).await;
    let key = "sk-transport-Secret-0123456789";
    server.add_keys(id, &[key]).await;
    let (status, body) = status_and_json(chat(&server, &[]).await).await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["code"], "UPSTREAM_ERROR");
    let message = body["message"].as_str().expect("message");
    assert!(!message.is_empty() && !message.contains(key), "{message}");

    assert!(server.stop().await.success());
    let mut attempts = logged_attempts(&server);
    attempts.sort();
    let expected = [
        (500, "final"),
        (500, "retry"),
        (500, "retry"),
        (500, "retry"),
    ];
    let expected: Vec<(i64, String)> = expected.iter().map(|(s, t)| (*s, t.to_string())).collect();
    assert_eq!(attempts, expected, "max_retries (3) + 1 attempts logged");
}

/// §2.10: a client that goes away is logged as 499 and does not count against the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_10_client_going_away_is_logged_499_without_penalising_the_key() {
    let mock = MockUpstream::start().await;
    let (mut server, _) = openai_group(&mock, &["sk-upstream-1"], json!({})).await;
    let body = chat_body().to_string();
    // The gate is never opened: the upstream answer never comes, only the client can end it.
    let request = format!(
        "POST {CHAT} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {PROXY_KEY}\r\n\
         Content-Type: application/json\r\nx-mock-gate: never\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut client = TcpStream::connect(("127.0.0.1", server.port))
        .await
        .expect("connect");
    client.write_all(request.as_bytes()).await.expect("write");
    within("the upstream to receive the request", mock.wait_requests(1)).await;
    drop(client);

    assert!(server.stop().await.success());
    assert_eq!(logged_attempts(&server), [(499, "final".to_string())]);
    let (failures, status): (i64, String) = server
        .db()
        .query_row(
            "SELECT failure_count, status FROM api_keys WHERE key_value = 'sk-upstream-1'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("key row");
    assert_eq!((failures, status.as_str()), (0, "active"));
    assert_eq!(mock.request_count(), 1, "no retry after the client left");
}

/// A client that leaves an idle stream (the upstream quiet for an hour) is noticed while the
/// upstream is quiet, not at its next chunk: the attempt is logged 499 and its sockets let go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_leaving_an_idle_stream_is_noticed_before_the_next_chunk() {
    let mock = MockUpstream::start().await;
    let (server, _) = openai_group(&mock, &["sk-upstream-1"], json!({})).await;
    server
        .set_settings(json!({"request_log_write_interval_minutes": 0}))
        .await;
    let body = json!({"model": "gpt-4o-mini", "stream": true,
        "messages": [{"role": "user", "content": "hi"}]})
    .to_string();
    let request = format!(
        "POST {CHAT} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {PROXY_KEY}\r\n\
         Content-Type: application/json\r\nx-mock-chunks: 2\r\n\
         x-mock-chunk-delay-ms: 3600000\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut client = TcpStream::connect(("127.0.0.1", server.port))
        .await
        .expect("connect");
    client.write_all(request.as_bytes()).await.expect("write");
    let mut received = Vec::new();
    let first_event = async {
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&received).contains("data:") {
            let n = client.read(&mut buf).await.expect("read");
            assert!(n > 0, "closed before the first event");
            received.extend_from_slice(&buf[..n]);
        }
    };
    within("the first event", first_event).await;
    drop(client);

    let logged = async {
        while logged_attempts(&server).is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    within("the attempt to be logged", logged).await;
    assert_eq!(logged_attempts(&server), [(499, "final".to_string())]);
}

// Upstream connections: keep-alive reuse and TLS.

/// A TCP relay in front of `target` that counts the connections it accepts: how the test sees
/// whether the proxy reuses its upstream connections (the mock does not expose connections).
struct ConnectionCounter {
    port: u16,
    accepted: Arc<AtomicUsize>,
    /// Connections the proxy closed (and the relay then closed towards the mock).
    closed: Arc<AtomicUsize>,
    /// Rung after each close.
    close_rung: Arc<tokio::sync::Notify>,
}

impl ConnectionCounter {
    /// Runs on the test's runtime until the test ends.
    async fn start(target: u16) -> ConnectionCounter {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind relay");
        let port = listener.local_addr().expect("relay addr").port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let close_rung = Arc::new(tokio::sync::Notify::new());
        let (opens, closes, ring) = (accepted.clone(), closed.clone(), close_rung.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                opens.fetch_add(1, Ordering::SeqCst);
                let (closes, ring) = (closes.clone(), ring.clone());
                tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", target)).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                    closes.fetch_add(1, Ordering::SeqCst);
                    ring.notify_waiters();
                });
            }
        });
        ConnectionCounter {
            port,
            accepted,
            closed,
            close_rung,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Returns once `n` connections have ended.
    async fn wait_closed(&self, n: usize) {
        loop {
            // Made before the check, it hears any close that follows it.
            let rung = self.close_rung.notified();
            if self.closed.load(Ordering::SeqCst) >= n {
                return;
            }
            rung.await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_9_upstream_connections_are_kept_alive_and_reused() {
    let mock = MockUpstream::start().await;
    let relay = ConnectionCounter::start(mock.port()).await;
    let server = Server::start().await;
    let id = server
        .create_group(
            "g",
            "openai",
            &format!("http://127.0.0.1:{}", relay.port),
            json!({}),
        )
        .await;
    server.add_keys(id, &["sk-upstream-1"]).await;
    for _ in 0..20 {
        let (status, body) = status_and_text(chat(&server, &[]).await).await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(mock.request_count(), 20);
    // Sequential requests on one client connection stay on one shard and its pool.
    assert!(
        relay.accepted() <= 2,
        "{} upstream connections for 20 requests",
        relay.accepted()
    );
}

/// v1 sends stream requests through a client of their own whose pools are twice the group's, at
/// least 20 per host: after a burst of streams all their upstream connections stay warm for the
/// next burst, where as many plain requests keep only `max_idle_conns_per_host` (the others are
/// closed after a second's grace, where v1 closes them at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_9_streams_keep_twice_the_idle_upstream_connections() {
    const BURST: usize = 6;
    let mock = MockUpstream::start().await;
    let relay = ConnectionCounter::start(mock.port()).await;
    // One shard, so one pool whichever shard a client connection would land on.
    let server = Server::start_with(&[("ENGINE_THREADS", "1")]).await;
    server
        .set_settings(json!({"request_log_write_interval_minutes": 0}))
        .await;
    let upstream = format!("http://127.0.0.1:{}", relay.port);
    let config = json!({"config": {"max_idle_conns_per_host": 2}});
    let id = server.create_group("g", "openai", &upstream, config).await;
    server.add_keys(id, &["sk-upstream-1"]).await;

    // BURST requests held at the mock together (so on BURST upstream connections), then let go;
    // returns once each is logged, which the proxy does after handing its connection back.
    let burst = |stream: bool, gate: &'static str, before: usize| {
        let (server, mock) = (&server, &mock);
        async move {
            let body = json!({"model": "gpt-4o-mini", "stream": stream, "messages": []});
            let replies = (0..BURST).map(|_| async {
                let response = post(server, CHAT, &[("x-mock-gate", gate)], &body).await;
                status_and_text(response).await
            });
            let release = async {
                within("the burst at the mock", mock.wait_requests(before + BURST)).await;
                mock.open_gate(gate);
            };
            let replies = within(
                "the burst's replies",
                futures_util::future::join_all(replies),
            );
            let (replies, ()) = tokio::join!(replies, release);
            for (status, text) in replies {
                assert_eq!(status, 200, "{text}");
            }
            within("the burst to be logged", async {
                while logged_attempts(server).len() < before + BURST {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await;
        }
    };
    burst(true, "streams-1", 0).await;
    assert_eq!(relay.accepted(), BURST);
    burst(true, "streams-2", BURST).await;
    assert_eq!(
        relay.accepted(),
        BURST,
        "the second burst of streams found them all pooled"
    );
    burst(false, "plain-1", 2 * BURST).await;
    assert_eq!(relay.accepted(), BURST);
    // Plain requests handed back six, of which the pool keeps two beyond the grace.
    within("the surplus to be closed", relay.wait_closed(BURST - 2)).await;
    burst(false, "plain-2", 3 * BURST).await;
    assert_eq!(relay.accepted(), 2 * BURST - 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_9_https_upstream_is_trusted_through_ssl_cert_file() {
    let mock = MockUpstream::start_tls().await;
    let certs = tempfile::tempdir().expect("tempdir");
    let ca = certs.path().join("mock-ca.pem");
    std::fs::write(&ca, mock.ca_pem().expect("TLS mock has a CA")).expect("write CA");
    let server = Server::start_with(&[("SSL_CERT_FILE", ca.to_str().expect("UTF-8 path"))]).await;
    let id = server
        .create_group("g", "openai", &mock.url(), json!({}))
        .await;
    server.add_keys(id, &["sk-upstream-1"]).await;
    let (status, reply) = status_and_json(chat(&server, &[]).await).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        reply["choices"][0]["message"]["content"],
        "chunk0 chunk1 chunk2"
    );
    assert_eq!(
        mock.requests()[0].header("authorization"),
        Some("Bearer sk-upstream-1")
    );
}

// Request bodies.

/// Encodes `parts` as a chunked body.
fn chunked(parts: &[&str]) -> String {
    let mut out: String = parts
        .iter()
        .map(|p| format!("{:x}\r\n{p}\r\n", p.len()))
        .collect();
    out.push_str("0\r\n\r\n");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_3_chunked_client_body_reaches_upstream_with_content_length() {
    let mock = MockUpstream::start().await;
    let (server, _) = openai_group(&mock, &["sk-upstream-1"], json!({})).await;
    let parts = [
        r#"{"model":"gpt-4o-mini","#,
        r#""messages":[{"role":"user","#,
        r#""content":"hi"}]}"#,
    ];
    let request = format!(
        "POST {CHAT} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {PROXY_KEY}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{}",
        chunked(&parts)
    );
    let response = raw_exchange(server.port, request.as_bytes()).await;
    assert!(response.starts_with("HTTP/1.1 200 "), "{response}");
    let sent = &mock.requests()[0];
    let whole = parts.concat();
    assert_eq!(sent.body_text(), whole);
    assert_eq!(
        sent.header("content-length"),
        Some(whole.len().to_string().as_str())
    );
    assert_eq!(sent.header("transfer-encoding"), None);
}

/// Reads from `stream` until `buf` holds `end`.
async fn read_until(stream: &mut TcpStream, buf: &mut Vec<u8>, end: &[u8]) {
    while !buf.windows(end.len()).any(|w| w == end) {
        let mut piece = [0u8; 4096];
        let n = stream.read(&mut piece).await.expect("read");
        assert!(
            n > 0,
            "connection closed; got {:?}",
            String::from_utf8_lossy(buf)
        );
        buf.extend_from_slice(&piece[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_3_expect_100_continue_gets_an_interim_response() {
    let mock = MockUpstream::start().await;
    let (server, _) = openai_group(&mock, &["sk-upstream-1"], json!({})).await;
    let body = chat_body().to_string();
    let head = format!(
        "POST {CHAT} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {PROXY_KEY}\r\n\
         Content-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    let mut stream = TcpStream::connect(("127.0.0.1", server.port))
        .await
        .expect("connect");
    stream.write_all(head.as_bytes()).await.expect("write head");
    let mut received = Vec::new();
    within(
        "100 Continue",
        read_until(&mut stream, &mut received, b"\r\n\r\n"),
    )
    .await;
    let interim = String::from_utf8_lossy(&received).into_owned();
    assert!(
        interim.starts_with("HTTP/1.1 100 Continue\r\n"),
        "{interim}"
    );

    stream.write_all(body.as_bytes()).await.expect("write body");
    let mut rest = Vec::new();
    within("the response", stream.read_to_end(&mut rest))
        .await
        .expect("read");
    let response = String::from_utf8_lossy(&rest);
    assert!(response.starts_with("HTTP/1.1 200 "), "{response}");
    let sent = &mock.requests()[0];
    assert_eq!(sent.body_text(), body);
    assert_eq!(sent.header("expect"), None);
}
