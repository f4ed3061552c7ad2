//! The client-facing HTTP/1.1 codec over raw TCP: request-smuggling defences, limits, timeouts,
//! pipelining, and admin routes served through the engine's port. Every refused request must
//! close its connection, never reach the upstream, and leave the server serving the next one.

mod common;

use std::time::{Duration, Instant};

use common::{PROXY_KEY, Server, raw_exchange, raw_exchange_closed};
use mock_upstream::MockUpstream;
use serde_json::json;

/// Bound on waiting for the server to answer and close; a failure, never a pause.
const WAIT: Duration = Duration::from_secs(10);

/// A server with an OpenAI group `g` on `mock` (one key), so smuggled requests have a real
/// upstream to reach if the defences fail.
async fn server_with_group(mock: &MockUpstream, env: &[(&str, &str)]) -> Server {
    let server = Server::start_with(env).await;
    let id = server
        .create_group("g", "openai", &mock.url(), json!({}))
        .await;
    server.add_keys(id, &["sk-upstream-1"]).await;
    server
}

/// A proxy POST head up to (not including) the blank line, with `fields` (each ending in CRLF).
fn proxy_post_head(fields: &str) -> String {
    format!(
        "POST /proxy/g/v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n\
         Authorization: Bearer {PROXY_KEY}\r\nContent-Type: application/json\r\n{fields}"
    )
}

/// Sends `request` on a new connection; asserts the answer is `status` and the connection is
/// closed, then that the server still serves `/health`.
async fn assert_refused(server: &Server, request: &[u8], status: u16) {
    let (response, closed) = raw_exchange_closed(server.port, request, WAIT).await;
    let shown = String::from_utf8_lossy(&request[..request.len().min(200)]);
    assert!(
        response.starts_with(&format!("HTTP/1.1 {status} ")),
        "{shown:?} got {response:?}"
    );
    assert!(closed, "{shown:?}: connection left open after {status}");
    assert_healthy(server).await;
}

async fn assert_healthy(server: &Server) {
    let response = server
        .client
        .get(server.url("/health"))
        .timeout(WAIT)
        .send()
        .await
        .expect("GET /health");
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("health JSON");
    assert_eq!(body["status"], "healthy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_with_transfer_encoding_is_400_and_never_forwarded() {
    let mock = MockUpstream::start().await;
    let server = server_with_group(&mock, &[]).await;
    // Read by Content-Length, the body is "0\r\n\r\n"; read as chunked, a second request follows.
    let smuggled = format!(
        "{}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n\
         GET /proxy/g/v1/models HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {PROXY_KEY}\r\n\r\n",
        proxy_post_head("")
    );
    assert_refused(&server, smuggled.as_bytes(), 400).await;
    assert_eq!(
        mock.request_count(),
        0,
        "the upstream received {:?}",
        mock.requests()
    );

    // The proxy path itself still works, and only this request reached the upstream.
    let body = r#"{"model":"m"}"#;
    let normal = format!(
        "{}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        proxy_post_head(""),
        body.len()
    );
    let response = raw_exchange(server.port, normal.as_bytes()).await;
    assert!(response.starts_with("HTTP/1.1 200 "), "{response}");
    assert_eq!(mock.request_count(), 1);
    assert_eq!(mock.requests()[0].path, "/v1/chat/completions");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_content_lengths_are_400() {
    let mock = MockUpstream::start().await;
    let server = server_with_group(&mock, &[]).await;
    for lengths in [
        "Content-Length: 5\r\nContent-Length: 6\r\n",
        "Content-Length: 5, 6\r\n",
    ] {
        let request = format!("{}{lengths}\r\n{{\"a\":1}}", proxy_post_head(""));
        assert_refused(&server, request.as_bytes(), 400).await;
    }
    assert_eq!(mock.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn obfuscated_transfer_encodings_are_400() {
    let mock = MockUpstream::start().await;
    let server = server_with_group(&mock, &[]).await;
    let encodings = [
        "Transfer-Encoding: chunked, identity\r\n",
        "Transfer-Encoding: xchunked\r\n",
        "Transfer-Encoding:\x0bchunked\r\n",
        "Transfer-Encoding: chunked\x0b\r\n",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
    ];
    for encoding in encodings {
        let request = format!(
            "{}{encoding}\r\n5\r\nhello\r\n0\r\n\r\n",
            proxy_post_head("")
        );
        assert_refused(&server, request.as_bytes(), 400).await;
    }
    assert_eq!(mock.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn obs_fold_and_bare_lf_are_400() {
    let mock = MockUpstream::start().await;
    let server = server_with_group(&mock, &[]).await;
    let folded = format!(
        "{}X-Folded: a\r\n  continued\r\nContent-Length: 0\r\n\r\n",
        proxy_post_head("")
    );
    assert_refused(&server, folded.as_bytes(), 400).await;
    assert_refused(&server, b"GET /health HTTP/1.1\nHost: localhost\n\n", 400).await;
    assert_refused(
        &server,
        b"GET /health HTTP/1.1\r\nHost: localhost\nX-A: 1\r\n\r\n",
        400,
    )
    .await;
    assert_eq!(mock.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_line_over_8_kib_is_414() {
    let server = Server::start().await;
    let request = format!(
        "GET /health?pad={} HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "a".repeat(9 * 1024)
    );
    assert_refused(&server, request.as_bytes(), 414).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_over_64_kib_is_431() {
    let server = Server::start().await;
    let big: String = (0..9)
        .map(|i| format!("X-Big-{i}: {}\r\n", "b".repeat(8000)))
        .collect();
    let request = format!("GET /health HTTP/1.1\r\nHost: localhost\r\n{big}\r\n");
    assert_refused(&server, request.as_bytes(), 431).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_max_request_body_mb_is_413() {
    let mock = MockUpstream::start().await;
    let server = server_with_group(&mock, &[("MAX_REQUEST_BODY_MB", "1")]).await;
    // Only the head: the length alone is refused, before any body byte is read.
    let request = format!(
        "{}Content-Length: {}\r\n\r\n",
        proxy_post_head(""),
        2 * 1024 * 1024
    );
    assert_refused(&server, request.as_bytes(), 413).await;
    assert_eq!(mock.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let mock = MockUpstream::start().await;
    let server = server_with_group(&mock, &[]).await;
    let body = r#"{"model":"m"}"#;
    // The first is slower upstream, so answering in arrival order is not a matter of luck.
    let first = format!(
        "{}x-mock-status: 201\r\nx-mock-body: first\r\nx-mock-delay-ms: 200\r\nContent-Length: {}\r\n\r\n{body}",
        proxy_post_head(""),
        body.len()
    );
    let second = format!(
        "{}x-mock-status: 202\r\nx-mock-body: second\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        proxy_post_head(""),
        body.len()
    );
    let (response, closed) =
        raw_exchange_closed(server.port, format!("{first}{second}").as_bytes(), WAIT).await;
    assert!(closed, "the second request asked to close: {response}");
    let at = |needle: &str| {
        response
            .find(needle)
            .unwrap_or_else(|| panic!("no {needle:?} in {response}"))
    };
    assert_eq!(at("HTTP/1.1 201 "), 0, "{response}");
    assert!(at("first") < at("HTTP/1.1 202 "), "{response}");
    assert!(at("HTTP/1.1 202 ") < at("second"), "{response}");
    assert_eq!(mock.request_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_head_is_cut_off_after_server_read_timeout() {
    let server = Server::start_with(&[("SERVER_READ_TIMEOUT", "1")]).await;
    let started = Instant::now();
    let (response, closed) =
        raw_exchange_closed(server.port, b"GET /health HTTP/1.1\r\nHo", WAIT).await;
    let waited = started.elapsed();
    assert!(
        closed,
        "half a head kept the connection open for {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(5),
        "closed only after {waited:?}"
    );
    assert!(
        response.is_empty() || response.starts_with("HTTP/1.1 408 "),
        "{response}"
    );
    assert_healthy(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_routes_are_served_through_the_engine_port() {
    let server = Server::start().await;
    assert_healthy(&server).await;
    let (status, body) = server.api("GET", "/api/x", None).await;
    assert_eq!(status, 404, "{body}");
    let (status, _) = server.api("GET", "/api/groups", None).await;
    assert_eq!(status, 200);
    let unauthenticated = server
        .client
        .get(server.url("/api/groups"))
        .timeout(WAIT)
        .send()
        .await
        .expect("request");
    assert_eq!(unauthenticated.status(), 401);
}

/// Uploads above 1 MiB are streamed to the control plane, not buffered on the shard: a real
/// key import goes through whole, and an unauthenticated one is refused without the gateway
/// reading its body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_admin_bodies_are_streamed_to_the_control_plane() {
    let server = Server::start().await;
    let id = server
        .create_group("big", "openai", "http://127.0.0.1:9", serde_json::json!({}))
        .await;
    let keys: Vec<String> = (0..40_000)
        .map(|i| format!("sk-streamed-upload-key-{i:08}"))
        .collect();
    let body = serde_json::json!({"group_id": id, "keys_text": keys.join("\n")}).to_string();
    assert!(body.len() > 1024 * 1024, "{} bytes", body.len());
    let (status, resp) = server
        .api_text("POST", "/api/keys/add-multiple", &body)
        .await;
    // add-multiple takes at most 5,000 keys: the control plane read the whole body to say so.
    assert_eq!(status, 400, "{resp}");

    let response = server
        .client
        .post(server.url("/api/keys/add-async"))
        .bearer_auth(common::AUTH_KEY)
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status(), 200);
    let done = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let (_, status) = server.api("GET", "/api/tasks/status", None).await;
            if status["data"]["is_running"] == false && status["data"]["result"].is_object() {
                return status["data"]["result"]["added_count"].clone();
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("import finished");
    assert_eq!(done, 40_000);

    // Without AUTH_KEY the control plane answers 401 before reading: the client learns it at
    // once and the gateway never holds the upload.
    let (text, closed) = raw_exchange_closed(
        server.port,
        format!(
            "POST /api/keys/add-async HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{{\"group_id\":",
            50 * 1024 * 1024
        )
        .as_bytes(),
        Duration::from_secs(10),
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 401"), "{text}");
    assert!(
        closed,
        "a half-sent body leaves the connection unusable: it is closed"
    );
    let health = server
        .client
        .get(server.url("/health"))
        .send()
        .await
        .expect("health");
    assert_eq!(health.status(), 200);
}
