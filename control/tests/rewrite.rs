//! Rewrites in v1's order (§2.3, §2.8): model redirect in JSON bodies and Gemini paths, strict
//! and loose; model-list interception for OpenAI and Gemini shapes; compressed error bodies.

mod common;

use std::io::Write;

use common::{PROXY_KEY, Server};
use mock_upstream::MockUpstream;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn group_with_rules(
    mock: &MockUpstream,
    channel: &str,
    rules: Value,
    strict: bool,
) -> Server {
    let server = Server::start().await;
    let extra = json!({"model_redirect_rules": rules, "model_redirect_strict": strict});
    let id = server.create_group("g", channel, &mock.url(), extra).await;
    server.add_keys(id, &["sk-rewrite-upstream-1"]).await;
    server
}

async fn get_json(server: &Server, path: &str) -> (u16, Value) {
    let r = server
        .client
        .get(server.url(path))
        .bearer_auth(PROXY_KEY)
        .send()
        .await
        .expect("request");
    (r.status().as_u16(), r.json().await.expect("json"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_8_model_redirect_rewrites_the_body_and_logs_the_requested_model() {
    let mock = MockUpstream::start().await;
    let mut server = group_with_rules(
        &mock,
        "openai",
        json!({"gpt-4o": "gpt-4o-2024-08-06"}),
        false,
    )
    .await;
    let chat =
        |model: &str| json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
    let r = server
        .proxy_post("/proxy/g/v1/chat/completions", chat("gpt-4o"))
        .await;
    assert_eq!(r.status(), 200);
    let r = server
        .proxy_post("/proxy/g/v1/chat/completions", chat("other-model"))
        .await;
    assert_eq!(r.status(), 200, "loose mode passes unknown models through");
    let models: Vec<Value> = mock
        .requests()
        .iter()
        .map(|r| r.json()["model"].clone())
        .collect();
    assert_eq!(models, [json!("gpt-4o-2024-08-06"), json!("other-model")]);
    assert_eq!(
        mock.requests()[0].json()["messages"][0]["content"],
        "hi",
        "the rest of the body kept"
    );

    assert!(server.stop().await.success());
    let mut logged: Vec<String> = server
        .db()
        .prepare("SELECT model FROM request_logs")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .map(|r| r.expect("row"))
        .collect();
    logged.sort();
    assert_eq!(
        logged,
        ["gpt-4o", "other-model"],
        "v1 logs the model as requested, before the redirect"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_8_strict_redirect_refuses_unlisted_models_with_400() {
    let mock = MockUpstream::start().await;
    let mut server = group_with_rules(&mock, "openai", json!({"alias": "real"}), true).await;
    let body = json!({"model": "not-listed", "messages": []});
    let r = server
        .proxy_post("/proxy/g/v1/chat/completions", body)
        .await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["code"], "BAD_REQUEST");
    assert_eq!(
        body["message"],
        "model 'not-listed' is not configured in redirect rules"
    );
    assert_eq!(mock.request_count(), 0);
    assert!(server.stop().await.success());
    let (status, kind): (i64, String) = server
        .db()
        .query_row(
            "SELECT status_code, request_type FROM request_logs",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("log");
    assert_eq!((status, kind.as_str()), (400, "final"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_8_gemini_native_path_is_redirected_keeping_the_method() {
    let mock = MockUpstream::start().await;
    let server = group_with_rules(
        &mock,
        "gemini",
        json!({"gem-alias": "gemini-2.0-flash"}),
        false,
    )
    .await;
    let body = json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]});
    let r = server
        .proxy_post(
            "/proxy/g/v1beta/models/gem-alias:streamGenerateContent?alt=sse",
            body,
        )
        .await;
    assert_eq!(r.status(), 200);
    let seen = &mock.requests()[0];
    assert_eq!(
        seen.path_only(),
        "/v1beta/models/gemini-2.0-flash:streamGenerateContent"
    );
    assert!(seen.path.contains("alt=sse"), "{}", seen.path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_8_openai_model_list_strict_and_loose() {
    let mock = MockUpstream::start().await;
    let strict = group_with_rules(&mock, "openai", json!({"my-alias": "gpt-4o"}), true).await;
    let (status, list) = get_json(&strict, "/proxy/g/v1/models").await;
    assert_eq!(status, 200);
    assert_eq!(
        list["data"],
        json!([{"id": "my-alias", "object": "model", "created": 0, "owned_by": "system"}])
    );

    let loose = group_with_rules(&mock, "openai", json!({"my-alias": "gpt-4o"}), false).await;
    let (_, list) = get_json(&loose, "/proxy/g/v1/models").await;
    let ids: Vec<&str> = list["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    for id in mock_upstream::formats::OPENAI_MODELS
        .iter()
        .chain(&["my-alias"])
    {
        assert!(ids.contains(id), "{id} missing from {ids:?}");
    }
    assert_eq!(ids.len(), mock_upstream::formats::OPENAI_MODELS.len() + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_8_gemini_model_list_strict() {
    let mock = MockUpstream::start().await;
    let server = group_with_rules(&mock, "gemini", json!({"fast": "gemini-2.0-flash"}), true).await;
    let (status, list) = get_json(&server, "/proxy/g/v1beta/models").await;
    assert_eq!(status, 200);
    let models = list["models"].as_array().expect("models");
    assert_eq!(models.len(), 1);
    assert_eq!(models[0]["name"], "models/fast");
    assert_eq!(
        models[0]["supportedGenerationMethods"],
        json!(["generateContent"])
    );
    assert!(list.get("nextPageToken").is_none());
}

/// An upstream that answers every request with a gzip-compressed 401 JSON error.
async fn gzip_error_upstream(message: &str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let body = json!({"error": {"message": message}}).to_string();
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(body.as_bytes()).expect("gzip");
    let gz = encoder.finish().expect("gzip");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let gz = gz.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let _ = stream.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    gz.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(&gz).await;
            });
        }
    });
    format!("http://127.0.0.1:{port}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_10_compressed_error_bodies_are_decoded_and_the_key_redacted() {
    let key = "sk-gzip-upstream-key-0123456789";
    let upstream = gzip_error_upstream(&format!("invalid key {key}")).await;
    let mut server = Server::start().await;
    let id = server
        .create_group(
            "g",
            "openai",
            &upstream,
            json!({"config": {"max_retries": 0}}),
        )
        .await;
    server.add_keys(id, &[key]).await;
    let r = server
        .proxy_post("/proxy/g/v1/chat/completions", json!({"model": "m"}))
        .await;
    assert_eq!(r.status(), 401);
    assert!(
        r.headers().get("content-encoding").is_none(),
        "the body we send is decoded"
    );
    let body: Value = r.json().await.expect("decoded JSON");
    assert_eq!(
        body["error"]["message"], "invalid key sk-g****6789",
        "the upstream body, with our upstream key masked"
    );
    assert!(server.stop().await.success());
    let error: String = server
        .db()
        .query_row("SELECT error_message FROM request_logs", [], |r| r.get(0))
        .expect("log");
    assert_eq!(error, "invalid key sk-g****6789");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_3_param_overrides_merge_top_level_fields_before_the_redirect() {
    let mock = MockUpstream::start().await;
    let server = Server::start().await;
    let extra = json!({
        "param_overrides": {"temperature": 0.2, "model": "alias", "stream_options": {"include_usage": true}},
        "model_redirect_rules": {"alias": "real-model"},
    });
    let id = server.create_group("g", "openai", &mock.url(), extra).await;
    server.add_keys(id, &["sk-override-upstream-1"]).await;
    let body = json!({"model": "client-model", "temperature": 1.0, "top_p": 0.5, "messages": []});
    let r = server
        .proxy_post("/proxy/g/v1/chat/completions", body)
        .await;
    assert_eq!(r.status(), 200);
    let sent = mock.requests()[0].json();
    assert_eq!(sent["temperature"], 0.2, "overridden");
    assert_eq!(sent["top_p"], 0.5, "kept");
    assert_eq!(sent["stream_options"]["include_usage"], true, "added");
    assert_eq!(
        sent["model"], "real-model",
        "overrides run first, then the redirect"
    );

    // A body that is not a JSON object passes unchanged.
    let raw = server
        .client
        .post(server.url("/proxy/g/v1/files"))
        .bearer_auth(PROXY_KEY)
        .body("not json")
        .send()
        .await
        .expect("request");
    assert_eq!(
        raw.status(),
        404,
        "the mock has no such route; 404 passes through"
    );
    assert_eq!(mock.requests()[1].body, b"not json");
}
