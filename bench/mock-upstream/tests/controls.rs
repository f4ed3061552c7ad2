//! What tests steer and read back: recording, failing keys, forced statuses, delays, waiting.

mod support;

use std::time::{Duration, Instant};

use mock_upstream::{MockOptions, MockUpstream, Recording};
use support::RawClient;

#[tokio::test]
async fn every_request_is_recorded_in_full() {
    let upstream = MockUpstream::start().await;
    let mut client = RawClient::connect(upstream.port()).await;
    let headers = [("Authorization", "Bearer sk-live"), ("X-Custom", "Value")];
    client
        .exchange(
            "/v1/chat/completions?trace=1",
            &headers,
            r#"{"model":"m","n":1}"#,
        )
        .await;

    let requests = upstream.requests();
    assert_eq!(requests.len(), 1);
    let recorded = &requests[0];
    assert_eq!(recorded.method, "POST");
    assert_eq!(recorded.path, "/v1/chat/completions?trace=1");
    assert_eq!(recorded.path_only(), "/v1/chat/completions");
    assert_eq!(recorded.query("trace").as_deref(), Some("1"));
    assert!(
        recorded
            .headers
            .iter()
            .any(|(n, v)| n == "x-custom" && v == "Value")
    );
    assert_eq!(recorded.header("X-CUSTOM"), Some("Value"));
    assert_eq!(recorded.json()["n"], 1);
    assert_eq!(recorded.upstream_key().as_deref(), Some("sk-live"));
}

#[tokio::test]
async fn upstream_key_from_each_provider_header() {
    let upstream = MockUpstream::start().await;
    let mut client = RawClient::connect(upstream.port()).await;
    client
        .exchange(
            "/v1/messages",
            &[("x-api-key", "sk-ant")],
            r#"{"model":"c"}"#,
        )
        .await;
    client
        .exchange(
            "/v1beta/models/g:generateContent",
            &[("x-goog-api-key", "AIza-h")],
            "{}",
        )
        .await;
    client
        .exchange("/v1beta/models/g:generateContent?key=AIza-q", &[], "{}")
        .await;
    let keys: Vec<_> = upstream
        .requests()
        .iter()
        .map(|r| r.upstream_key())
        .collect();
    assert_eq!(
        keys,
        [
            Some("sk-ant".into()),
            Some("AIza-h".into()),
            Some("AIza-q".into())
        ]
    );
}

#[tokio::test]
async fn failing_key_gets_its_error_whatever_the_route() {
    let upstream = MockUpstream::start().await;
    let error = r#"{"error":{"message":"Incorrect API key provided","code":"invalid_api_key"}}"#;
    upstream.fail_key("sk-bad", 401, error);
    let mut client = RawClient::connect(upstream.port()).await;

    let bad = client
        .exchange(
            "/v1/chat/completions",
            &[("authorization", "Bearer sk-bad")],
            r#"{"model":"m"}"#,
        )
        .await;
    assert_eq!(bad.status, 401);
    assert_eq!(bad.header("content-type"), Some("application/json"));
    assert_eq!(bad.text(), error);
    let via_query = client.exchange("/nowhere?key=sk-bad", &[], "").await;
    assert_eq!(via_query.status, 401);
    let good = client
        .exchange(
            "/v1/chat/completions",
            &[("authorization", "Bearer sk-good")],
            r#"{"model":"m"}"#,
        )
        .await;
    assert_eq!(good.status, 200);
    assert_eq!(
        upstream.request_count(),
        3,
        "failed requests are recorded too"
    );

    upstream.heal_key("sk-bad");
    let healed = client
        .exchange(
            "/v1/chat/completions",
            &[("authorization", "Bearer sk-bad")],
            r#"{"model":"m"}"#,
        )
        .await;
    assert_eq!(healed.status, 200);
}

#[tokio::test]
async fn failing_key_beats_x_mock_status() {
    let upstream = MockUpstream::start().await;
    upstream.fail_key("k", 429, "{}");
    let mut client = RawClient::connect(upstream.port()).await;
    let headers = [("x-api-key", "k"), ("x-mock-status", "500")];
    assert_eq!(
        client.exchange("/v1/messages", &headers, "{}").await.status,
        429
    );
}

#[tokio::test]
async fn x_mock_status_with_default_and_given_bodies() {
    let upstream = MockUpstream::start().await;
    let mut client = RawClient::connect(upstream.port()).await;

    let default = client
        .exchange(
            "/v1/chat/completions",
            &[("x-mock-status", "503")],
            r#"{"model":"m"}"#,
        )
        .await;
    assert_eq!(default.status, 503);
    assert!(
        default.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("503")
    );

    let given = [
        ("x-mock-status", "429"),
        ("x-mock-body", r#"{"error":{"type":"rate_limit"}}"#),
    ];
    let json = client.exchange("/v1/chat/completions", &given, "{}").await;
    assert_eq!(json.status, 429);
    assert_eq!(json.json()["error"]["type"], "rate_limit");
    assert_eq!(json.header("content-type"), Some("application/json"));

    let text = [("x-mock-status", "502"), ("x-mock-body", "bad gateway")];
    let plain = client.exchange("/anything", &text, "").await;
    assert_eq!(plain.status, 502);
    assert_eq!(plain.text(), "bad gateway");
    assert!(
        plain
            .header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );
}

#[tokio::test]
async fn malformed_control_header_is_a_400_naming_it() {
    let upstream = MockUpstream::start().await;
    let mut client = RawClient::connect(upstream.port()).await;
    let response = client
        .exchange("/v1/chat/completions", &[("x-mock-delay-ms", "soon")], "{}")
        .await;
    assert_eq!(response.status, 400);
    assert!(
        response.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("x-mock-delay-ms 'soon'")
    );
    // The connection stays usable.
    assert_eq!(
        client
            .exchange("/v1/chat/completions", &[], "{}")
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn x_mock_delay_holds_the_head() {
    let upstream = MockUpstream::start().await;
    let mut client = RawClient::connect(upstream.port()).await;
    let started = Instant::now();
    let response = client
        .exchange("/v1/chat/completions", &[("x-mock-delay-ms", "150")], "{}")
        .await;
    assert_eq!(response.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(150));
}

#[tokio::test]
async fn latency_option_delays_every_response() {
    let options = MockOptions {
        latency: Duration::from_millis(100),
        ..MockOptions::default()
    };
    let upstream = MockUpstream::start_with(options).await.unwrap();
    let mut client = RawClient::connect(upstream.port()).await;
    let started = Instant::now();
    client.get("/v1/models", &[]).await;
    client.read_response().await;
    assert!(started.elapsed() >= Duration::from_millis(100));
}

#[tokio::test]
async fn wait_requests_resolves_when_enough_arrived() {
    let upstream = MockUpstream::start().await;
    let port = upstream.port();
    let waiting = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut client = RawClient::connect(port).await;
        for _ in 0..3 {
            client.exchange("/v1/chat/completions", &[], "{}").await;
        }
    });
    tokio::time::timeout(Duration::from_secs(10), upstream.wait_requests(3))
        .await
        .expect("three requests recorded");
    assert!(upstream.request_count() >= 3);
    waiting.await.unwrap();
    // Already satisfied: returns at once.
    upstream.wait_requests(2).await;
}

#[tokio::test]
async fn requests_are_recorded_before_the_answer_is_sent() {
    let upstream = MockUpstream::start().await;
    let mut client = RawClient::connect(upstream.port()).await;
    client
        .post(
            "/v1/chat/completions",
            &[("x-mock-delay-ms", "60000")],
            r#"{"model":"slow"}"#,
        )
        .await;
    tokio::time::timeout(Duration::from_secs(10), upstream.wait_requests(1))
        .await
        .expect("recorded while the answer is still delayed");
    assert_eq!(upstream.requests()[0].json()["model"], "slow");
}

#[tokio::test]
async fn clear_forgets_requests() {
    let upstream = MockUpstream::start().await;
    let mut client = RawClient::connect(upstream.port()).await;
    client.exchange("/v1/chat/completions", &[], "{}").await;
    upstream.clear();
    assert_eq!(upstream.request_count(), 0);
    assert!(upstream.requests().is_empty());
    let again = client.exchange("/v1/chat/completions", &[], "{}").await;
    assert_eq!(again.header("x-mock-request-index"), Some("0"));
}

#[tokio::test]
async fn count_only_recording_counts_without_keeping() {
    let options = MockOptions {
        recording: Recording::CountOnly,
        ..MockOptions::default()
    };
    let upstream = MockUpstream::start_with(options).await.unwrap();
    let mut client = RawClient::connect(upstream.port()).await;
    client.exchange("/v1/chat/completions", &[], "{}").await;
    client.exchange("/v1/chat/completions", &[], "{}").await;
    assert_eq!(upstream.request_count(), 2);
    assert!(upstream.requests().is_empty());
    upstream.wait_requests(2).await;
}

#[test]
fn start_on_thread_serves_a_caller_that_blocks() {
    let upstream = MockUpstream::start_on_thread(MockOptions::default()).unwrap();
    // A blocking std client on this thread: the mock must answer from its own thread.
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", upstream.port())).unwrap();
    stream
        .write_all(b"GET /v1/models HTTP/1.1\r\nhost: mock\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert_eq!(upstream.request_count(), 1);
}
