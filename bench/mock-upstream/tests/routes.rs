//! Each route's whole (non-streamed) answer has the shape its provider's clients expect.

mod support;

use mock_upstream::MockUpstream;
use mock_upstream::formats::{GEMINI_MODELS, OPENAI_MODELS, PROMPT_TOKENS, reply_text};
use support::RawClient;

#[tokio::test]
async fn chat_completion_echoes_the_model_and_reports_usage() {
    let upstream = MockUpstream::start().await;
    let mut client = RawClient::connect(upstream.port()).await;
    let body = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
    let response = client.exchange("/v1/chat/completions", &[], body).await;

    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    let json = response.json();
    assert_eq!(json["id"], "chatcmpl-mock");
    assert_eq!(json["object"], "chat.completion");
    assert!(json["created"].is_u64());
    assert_eq!(json["model"], "gpt-4o-mini");
    assert_eq!(json["choices"][0]["message"]["role"], "assistant");
    assert_eq!(json["choices"][0]["message"]["content"], reply_text(3));
    assert_eq!(json["choices"][0]["finish_reason"], "stop");
    assert_eq!(json["usage"]["prompt_tokens"], PROMPT_TOKENS);
    assert_eq!(json["usage"]["completion_tokens"], 3);
    assert_eq!(json["usage"]["total_tokens"], PROMPT_TOKENS + 3);
}

#[tokio::test]
async fn gemini_openai_compatible_path_is_a_chat_completion() {
    let upstream = MockUpstream::start().await;
    let mut client = RawClient::connect(upstream.port()).await;
    let body = r#"{"model":"gemini-2.0-flash","messages":[]}"#;
    let response = client
        .exchange("/v1beta/openai/chat/completions", &[], body)
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(response.json()["model"], "gemini-2.0-flash");
}

#[tokio::test]
async fn model_with_json_special_characters_is_echoed_intact() {
    let upstream = MockUpstream::start().await;
    let mut client = RawClient::connect(upstream.port()).await;
    let body = r#"{"model":"we\"ird\\model\n\u00e9"}"#;
    let response = client.exchange("/v1/chat/completions", &[], body).await;
    assert_eq!(response.json()["model"], "we\"ird\\model\né");
}

#[tokio::test]
async fn x_mock_chunks_sets_the_reply_text_and_usage() {
    let upstream = MockUpstream::start().await;
    let mut client = RawClient::connect(upstream.port()).await;
    let response = client
        .exchange(
            "/v1/chat/completions",
            &[("x-mock-chunks", "5")],
            r#"{"model":"m"}"#,
        )
        .await;
    let json = response.json();
    assert_eq!(
        json["choices"][0]["message"]["content"],
        "chunk0 chunk1 chunk2 chunk3 chunk4"
    );
    assert_eq!(json["usage"]["completion_tokens"], 5);
}

#[tokio::test]
async fn responses_api_answer() {
    let upstream = MockUpstream::start().await;
    let mut client = RawClient::connect(upstream.port()).await;
    let response = client
        .exchange("/v1/responses", &[], r#"{"model":"gpt-4o","input":"hi"}"#)
        .await;

    assert_eq!(response.status, 200);
    let json = response.json();
    assert_eq!(json["object"], "response");
    assert_eq!(json["status"], "completed");
    assert_eq!(json["model"], "gpt-4o");
    assert_eq!(json["output"][0]["type"], "message");
    assert_eq!(json["output"][0]["content"][0]["type"], "output_text");
    assert_eq!(json["output"][0]["content"][0]["text"], reply_text(3));
    assert_eq!(json["usage"]["input_tokens"], PROMPT_TOKENS);
    assert_eq!(json["usage"]["output_tokens"], 3);
}

#[tokio::test]
async fn anthropic_messages_answer() {
    let upstream = MockUpstream::start().await;
    let mut client = RawClient::connect(upstream.port()).await;
    let body = r#"{"model":"claude-3-5-sonnet-latest","max_tokens":10,"messages":[]}"#;
    let response = client.exchange("/v1/messages", &[], body).await;

    assert_eq!(response.status, 200);
    let json = response.json();
    assert_eq!(json["type"], "message");
    assert_eq!(json["role"], "assistant");
    assert_eq!(json["model"], "claude-3-5-sonnet-latest");
    assert_eq!(json["content"][0]["type"], "text");
    assert_eq!(json["content"][0]["text"], reply_text(3));
    assert_eq!(json["stop_reason"], "end_turn");
    assert_eq!(json["usage"]["input_tokens"], PROMPT_TOKENS);
    assert_eq!(json["usage"]["output_tokens"], 3);
}

#[tokio::test]
async fn gemini_generate_content_takes_the_model_from_the_path() {
    let upstream = MockUpstream::start().await;
    let mut client = RawClient::connect(upstream.port()).await;
    let body = r#"{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}"#;
    let response = client
        .exchange(
            "/v1beta/models/gemini-2.0-flash:generateContent?key=AIza",
            &[],
            body,
        )
        .await;

    assert_eq!(response.status, 200);
    let json = response.json();
    assert_eq!(
        json["candidates"][0]["content"]["parts"][0]["text"],
        reply_text(3)
    );
    assert_eq!(json["candidates"][0]["content"]["role"], "model");
    assert_eq!(json["candidates"][0]["finishReason"], "STOP");
    assert_eq!(json["usageMetadata"]["promptTokenCount"], PROMPT_TOKENS);
    assert_eq!(json["usageMetadata"]["candidatesTokenCount"], 3);
    assert_eq!(json["usageMetadata"]["totalTokenCount"], PROMPT_TOKENS + 3);
    assert_eq!(json["modelVersion"], "gemini-2.0-flash");
}

#[tokio::test]
async fn model_lists() {
    let upstream = MockUpstream::start().await;
    let mut client = RawClient::connect(upstream.port()).await;

    client.get("/v1/models", &[]).await;
    let openai = client.read_response().await.json();
    assert_eq!(openai["object"], "list");
    let ids: Vec<_> = openai["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].clone())
        .collect();
    assert_eq!(ids, OPENAI_MODELS);
    assert_eq!(openai["data"][0]["object"], "model");
    assert!(openai["data"][0]["created"].is_u64());
    assert!(openai["data"][0]["owned_by"].is_string());

    client.get("/v1beta/models?key=AIza", &[]).await;
    let gemini = client.read_response().await.json();
    let names: Vec<_> = gemini["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].clone())
        .collect();
    let expected: Vec<_> = GEMINI_MODELS
        .iter()
        .map(|m| format!("models/{m}"))
        .collect();
    assert_eq!(names, expected);
}

#[tokio::test]
async fn unknown_route_is_an_openai_style_404() {
    let upstream = MockUpstream::start().await;
    let mut client = RawClient::connect(upstream.port()).await;
    let response = client.exchange("/v1/embeddings", &[], "{}").await;

    assert_eq!(response.status, 404);
    let json = response.json();
    assert_eq!(json["error"]["type"], "invalid_request_error");
    assert_eq!(json["error"]["code"], "not_found");
    assert!(
        json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("POST /v1/embeddings")
    );
    // A generation path with the wrong method is no route either.
    client.get("/v1/chat/completions", &[]).await;
    assert_eq!(client.read_response().await.status, 404);
    assert_eq!(
        upstream.request_count(),
        2,
        "unknown routes are still recorded"
    );
}

#[tokio::test]
async fn generation_body_that_is_not_json_is_a_400() {
    let upstream = MockUpstream::start().await;
    let mut client = RawClient::connect(upstream.port()).await;
    let response = client
        .exchange("/v1/chat/completions", &[], "not json")
        .await;
    assert_eq!(response.status, 400);
    assert_eq!(response.json()["error"]["code"], "invalid_json");
}
