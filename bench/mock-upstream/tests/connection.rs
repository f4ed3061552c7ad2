//! HTTP/1.1 connection handling: body framings in, keep-alive, pipelining, closing.

mod support;

use mock_upstream::MockUpstream;
use support::{RawClient, request};

#[tokio::test]
async fn chunked_request_body_is_decoded_and_recorded() {
    let upstream = MockUpstream::start().await;
    let mut client = RawClient::connect(upstream.port()).await;
    let head =
        "POST /v1/chat/completions HTTP/1.1\r\nhost: mock\r\ntransfer-encoding: chunked\r\n\r\n";
    client.send(head.as_bytes()).await;
    client.send(b"c\r\n{\"model\":\"ch\r\n").await;
    client.send(b"7\r\nunked\"}\r\n0\r\n\r\n").await;
    let response = client.read_response().await;

    assert_eq!(response.status, 200);
    assert_eq!(response.json()["model"], "chunked");
    let recorded = &upstream.requests()[0];
    assert_eq!(recorded.body, br#"{"model":"chunked"}"#);
    assert_eq!(recorded.header("transfer-encoding"), Some("chunked"));
}

#[tokio::test]
async fn keep_alive_serves_two_requests_on_one_connection() {
    let upstream = MockUpstream::start().await;
    let mut client = RawClient::connect(upstream.port()).await;
    let first = client
        .exchange("/v1/chat/completions", &[], r#"{"model":"one"}"#)
        .await;
    assert_eq!(first.header("connection"), None);
    assert_eq!(first.header("x-mock-request-index"), Some("0"));
    let second = client
        .exchange("/v1/chat/completions", &[], r#"{"model":"two"}"#)
        .await;
    assert_eq!(first.json()["model"], "one");
    assert_eq!(second.json()["model"], "two");
    assert_eq!(second.header("x-mock-request-index"), Some("1"));
    assert_eq!(upstream.request_count(), 2);
}

#[tokio::test]
async fn keep_alive_survives_a_stream() {
    let upstream = MockUpstream::start().await;
    let mut client = RawClient::connect(upstream.port()).await;
    let stream = client
        .exchange("/v1/messages", &[], r#"{"model":"m","stream":true}"#)
        .await;
    assert_eq!(stream.events().len(), 8);
    let whole = client
        .exchange("/v1/messages", &[], r#"{"model":"m"}"#)
        .await;
    assert_eq!(whole.status, 200);
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let upstream = MockUpstream::start().await;
    let mut client = RawClient::connect(upstream.port()).await;
    let both = [
        request("POST", "/v1/chat/completions", &[], r#"{"model":"a"}"#),
        request("GET", "/v1/models", &[], ""),
        request("POST", "/v1/chat/completions", &[], r#"{"model":"c"}"#),
    ]
    .concat();
    client.send(both.as_bytes()).await;
    assert_eq!(client.read_response().await.json()["model"], "a");
    assert_eq!(client.read_response().await.json()["object"], "list");
    assert_eq!(client.read_response().await.json()["model"], "c");
}

#[tokio::test]
async fn connection_close_is_honoured() {
    let upstream = MockUpstream::start().await;
    let mut client = RawClient::connect(upstream.port()).await;
    let response = client
        .exchange(
            "/v1/chat/completions",
            &[("connection", "close")],
            r#"{"model":"m"}"#,
        )
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("connection"), Some("close"));
    assert!(client.is_closed().await);
}

#[tokio::test]
async fn http_1_0_closes_unless_kept_alive() {
    let upstream = MockUpstream::start().await;
    let mut client = RawClient::connect(upstream.port()).await;
    client.send(b"GET /v1/models HTTP/1.0\r\n\r\n").await;
    assert_eq!(client.read_response().await.status, 200);
    assert!(client.is_closed().await);
}

#[tokio::test]
async fn close_framing_has_no_length_and_ends_with_the_connection() {
    let upstream = MockUpstream::start().await;
    let mut client = RawClient::connect(upstream.port()).await;
    let headers = [("x-mock-framing", "close")];
    let response = client
        .exchange(
            "/v1/chat/completions",
            &headers,
            r#"{"model":"m","stream":true}"#,
        )
        .await;
    assert_eq!(response.header("content-length"), None);
    assert_eq!(response.header("transfer-encoding"), None);
    assert_eq!(response.header("connection"), Some("close"));
    assert_eq!(
        response.events().len(),
        4,
        "read until EOF: {}",
        response.text()
    );

    let mut client = RawClient::connect(upstream.port()).await;
    let whole = client
        .exchange("/v1/chat/completions", &headers, r#"{"model":"m"}"#)
        .await;
    assert_eq!(whole.header("content-length"), None);
    assert_eq!(whole.json()["model"], "m");
}

#[tokio::test]
async fn expect_continue_gets_an_interim_response() {
    let upstream = MockUpstream::start().await;
    let mut client = RawClient::connect(upstream.port()).await;
    let body = r#"{"model":"m"}"#;
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: mock\r\nexpect: 100-continue\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    client.send(head.as_bytes()).await;
    assert_eq!(client.read_head().await.status, 100);
    client.send(body.as_bytes()).await;
    assert_eq!(client.read_response().await.status, 200);
}

#[tokio::test]
async fn malformed_request_is_a_400_then_close() {
    let upstream = MockUpstream::start().await;
    let mut client = RawClient::connect(upstream.port()).await;
    client
        .send(b"POST /v1/chat/completions HTTP/1.1\r\ncontent-length: many\r\n\r\n")
        .await;
    let response = client.read_response().await;
    assert_eq!(response.status, 400);
    assert!(
        response.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Content-Length 'many'")
    );
    assert!(client.is_closed().await);
    assert_eq!(
        upstream.request_count(),
        0,
        "unparseable requests are not recorded"
    );
}

#[tokio::test]
async fn dropping_the_mock_closes_held_connections() {
    let upstream = MockUpstream::start().await;
    let mut client = RawClient::connect(upstream.port()).await;
    client
        .post(
            "/v1/chat/completions",
            &[("x-mock-gate", "never")],
            r#"{"model":"m","stream":true}"#,
        )
        .await;
    client.read_head().await;
    client.next_chunk().await.unwrap();
    drop(upstream);
    assert!(
        client.is_closed().await,
        "the held stream ends when the mock goes away"
    );
}
