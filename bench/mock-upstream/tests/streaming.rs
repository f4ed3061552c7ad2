//! Streams leave event by event: one HTTP chunk per event, paced, and held by gates.

mod support;

use std::time::{Duration, Instant};

use mock_upstream::MockUpstream;
use mock_upstream::formats::{PROMPT_TOKENS, chunk_text};
use support::{RawClient, parse_events};

fn chunk_json(chunk: &[u8]) -> serde_json::Value {
    let text = std::str::from_utf8(chunk).unwrap();
    let data = text
        .strip_prefix("data: ")
        .and_then(|d| d.strip_suffix("\n\n"));
    serde_json::from_str(data.unwrap_or_else(|| panic!("not one SSE data event: {text:?}")))
        .unwrap()
}

#[tokio::test]
async fn chat_stream_sends_one_chunk_per_event_then_usage_and_done() {
    let upstream = MockUpstream::start().await;
    let mut client = RawClient::connect(upstream.port()).await;
    let body = r#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true}}"#;
    client.post("/v1/chat/completions", &[], body).await;

    let head = client.read_head().await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    assert_eq!(head.header("transfer-encoding"), Some("chunked"));
    assert_eq!(head.header("content-length"), None);
    for index in 0..3 {
        let event = chunk_json(&client.next_chunk().await.unwrap());
        assert_eq!(event["object"], "chat.completion.chunk");
        assert_eq!(event["model"], "gpt-4o-mini");
        assert_eq!(event["choices"][0]["delta"]["content"], chunk_text(index));
        let finish = if index == 2 {
            serde_json::json!("stop")
        } else {
            serde_json::Value::Null
        };
        assert_eq!(event["choices"][0]["finish_reason"], finish);
    }
    let usage = chunk_json(&client.next_chunk().await.unwrap());
    assert_eq!(usage["choices"], serde_json::json!([]));
    assert_eq!(usage["usage"]["prompt_tokens"], PROMPT_TOKENS);
    assert_eq!(usage["usage"]["completion_tokens"], 3);
    assert_eq!(client.next_chunk().await.unwrap(), b"data: [DONE]\n\n");
    assert_eq!(client.next_chunk().await, None);
}

#[tokio::test]
async fn chat_stream_without_include_usage_has_no_usage_chunk() {
    let upstream = MockUpstream::start().await;
    let mut client = RawClient::connect(upstream.port()).await;
    let response = client
        .exchange(
            "/v1/chat/completions",
            &[("x-mock-chunks", "2")],
            r#"{"model":"m","stream":true}"#,
        )
        .await;
    let events = response.events();
    assert_eq!(events.len(), 3);
    assert!(events.iter().all(|e| !e.data.contains("usage")));
    assert_eq!(events[2].data, "[DONE]");
}

#[tokio::test]
async fn chunk_delay_paces_the_events() {
    let upstream = MockUpstream::start().await;
    let mut client = RawClient::connect(upstream.port()).await;
    let headers = [("x-mock-chunks", "3"), ("x-mock-chunk-delay-ms", "100")];
    client
        .post(
            "/v1/chat/completions",
            &headers,
            r#"{"model":"m","stream":true}"#,
        )
        .await;
    client.read_head().await;
    client.next_chunk().await.unwrap();
    let first_event = Instant::now();
    client.next_chunk().await.unwrap();
    assert!(
        first_event.elapsed() >= Duration::from_millis(90),
        "second event waited for the delay"
    );
    client.next_chunk().await.unwrap();
    assert!(
        first_event.elapsed() >= Duration::from_millis(190),
        "third event waited again"
    );
}

#[tokio::test]
async fn gate_holds_the_stream_after_the_first_event_until_opened() {
    let upstream = MockUpstream::start().await;
    let mut client = RawClient::connect(upstream.port()).await;
    let headers = [("x-mock-gate", "g1")];
    client
        .post(
            "/v1/chat/completions",
            &headers,
            r#"{"model":"m","stream":true}"#,
        )
        .await;

    assert_eq!(client.read_head().await.status, 200);
    let first = chunk_json(&client.next_chunk().await.unwrap());
    assert_eq!(first["choices"][0]["delta"]["content"], chunk_text(0));
    assert!(
        !client.receives_within(Duration::from_millis(200)).await,
        "held at the gate"
    );

    upstream.open_gate("g1");
    let mut rest = Vec::new();
    while let Some(chunk) = client.next_chunk().await {
        rest.extend_from_slice(&chunk);
    }
    let events = parse_events(std::str::from_utf8(&rest).unwrap());
    assert_eq!(events.len(), 3, "two content events and [DONE]: {events:?}");
}

#[tokio::test]
async fn gate_opened_before_the_request_lets_it_through() {
    let upstream = MockUpstream::start().await;
    upstream.open_gate("early");
    let mut client = RawClient::connect(upstream.port()).await;
    let headers = [("x-mock-gate", "early")];
    let response = client
        .exchange(
            "/v1/chat/completions",
            &headers,
            r#"{"model":"m","stream":true}"#,
        )
        .await;
    assert_eq!(response.events().len(), 4);
}

#[tokio::test]
async fn gate_on_a_whole_reply_holds_the_head() {
    let upstream = MockUpstream::start().await;
    let mut client = RawClient::connect(upstream.port()).await;
    client
        .post(
            "/v1/chat/completions",
            &[("x-mock-gate", "w")],
            r#"{"model":"m"}"#,
        )
        .await;
    upstream.wait_requests(1).await;
    assert!(
        !client.receives_within(Duration::from_millis(150)).await,
        "held at the gate"
    );
    upstream.open_gate("w");
    assert_eq!(client.read_response().await.status, 200);
}

#[tokio::test]
async fn responses_stream_events() {
    let upstream = MockUpstream::start().await;
    let mut client = RawClient::connect(upstream.port()).await;
    let response = client
        .exchange(
            "/v1/responses",
            &[("x-mock-chunks", "2")],
            r#"{"model":"gpt-4o","stream":true}"#,
        )
        .await;
    assert_eq!(response.header("content-type"), Some("text/event-stream"));
    let events = response.events();
    let names: Vec<_> = events.iter().map(|e| e.name.as_deref().unwrap()).collect();
    assert_eq!(
        names,
        [
            "response.created",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.completed"
        ]
    );
    for event in &events {
        let data: serde_json::Value = serde_json::from_str(&event.data).unwrap();
        assert_eq!(data["type"], event.name.as_deref().unwrap());
    }
    let delta: serde_json::Value = serde_json::from_str(&events[2].data).unwrap();
    assert_eq!(delta["delta"], chunk_text(1));
    let completed: serde_json::Value = serde_json::from_str(&events[3].data).unwrap();
    assert_eq!(completed["response"]["status"], "completed");
    assert_eq!(completed["response"]["model"], "gpt-4o");
    assert_eq!(completed["response"]["usage"]["output_tokens"], 2);
}

#[tokio::test]
async fn anthropic_stream_events() {
    let upstream = MockUpstream::start().await;
    let mut client = RawClient::connect(upstream.port()).await;
    client
        .post("/v1/messages", &[], r#"{"model":"claude","stream":true}"#)
        .await;
    let head = client.read_head().await;
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    let mut events = Vec::new();
    while let Some(chunk) = client.next_chunk().await {
        let chunk_events = parse_events(std::str::from_utf8(&chunk).unwrap());
        assert_eq!(chunk_events.len(), 1, "one event per chunk");
        events.extend(chunk_events);
    }
    let names: Vec<_> = events.iter().map(|e| e.name.as_deref().unwrap()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let start: serde_json::Value = serde_json::from_str(&events[0].data).unwrap();
    assert_eq!(start["message"]["model"], "claude");
    let delta: serde_json::Value = serde_json::from_str(&events[2].data).unwrap();
    assert_eq!(delta["delta"]["text"], chunk_text(0));
    let message_delta: serde_json::Value = serde_json::from_str(&events[6].data).unwrap();
    assert_eq!(message_delta["usage"]["output_tokens"], 3);
    assert_eq!(message_delta["delta"]["stop_reason"], "end_turn");
}

#[tokio::test]
async fn gemini_sse_stream() {
    let upstream = MockUpstream::start().await;
    let mut client = RawClient::connect(upstream.port()).await;
    let response = client
        .exchange(
            "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse",
            &[],
            "{}",
        )
        .await;
    assert_eq!(response.header("content-type"), Some("text/event-stream"));
    let events = response.events();
    assert_eq!(events.len(), 3);
    let chunks: Vec<serde_json::Value> = events
        .iter()
        .map(|e| serde_json::from_str(&e.data).unwrap())
        .collect();
    assert_eq!(
        chunks[1]["candidates"][0]["content"]["parts"][0]["text"],
        chunk_text(1)
    );
    assert_eq!(chunks[2]["candidates"][0]["finishReason"], "STOP");
    assert_eq!(chunks[2]["usageMetadata"]["candidatesTokenCount"], 3);
    assert_eq!(chunks[2]["modelVersion"], "gemini-2.0-flash");
}

#[tokio::test]
async fn gemini_stream_without_sse_is_a_json_array_sent_in_pieces() {
    let upstream = MockUpstream::start().await;
    let mut client = RawClient::connect(upstream.port()).await;
    client
        .post("/v1beta/models/g:streamGenerateContent", &[], "{}")
        .await;
    let head = client.read_head().await;
    assert_eq!(head.header("content-type"), Some("application/json"));
    let mut pieces = Vec::new();
    while let Some(chunk) = client.next_chunk().await {
        pieces.push(chunk);
    }
    assert_eq!(pieces.len(), 3, "one array element per chunk");
    assert!(pieces[0].starts_with(b"["));
    let whole: serde_json::Value = serde_json::from_slice(&pieces.concat()).unwrap();
    assert_eq!(whole.as_array().unwrap().len(), 3);
    assert_eq!(
        whole[2]["usageMetadata"]["totalTokenCount"],
        PROMPT_TOKENS + 3
    );
}

#[tokio::test]
async fn length_framing_announces_the_whole_stream_yet_paces_it() {
    let upstream = MockUpstream::start().await;
    let mut client = RawClient::connect(upstream.port()).await;
    let headers = [("x-mock-framing", "length"), ("x-mock-gate", "len")];
    client
        .post(
            "/v1/chat/completions",
            &headers,
            r#"{"model":"m","stream":true}"#,
        )
        .await;
    let head = client.read_head().await;
    assert_eq!(head.header("transfer-encoding"), None);
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    let len: usize = head.header("content-length").unwrap().parse().unwrap();
    assert!(
        client.receives_within(Duration::from_millis(500)).await,
        "first event sent"
    );
    upstream.open_gate("len");
    let body = client.take(len).await;
    let events = parse_events(std::str::from_utf8(&body).unwrap());
    assert_eq!(events.len(), 4);
    assert_eq!(events[3].data, "[DONE]");
}
