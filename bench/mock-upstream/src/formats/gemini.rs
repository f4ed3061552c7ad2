//! Gemini `…/v1beta/models/{model}:generateContent` and `:streamGenerateContent`, and the model
//! list (`…/v1beta/models`).

use super::{FullText, GEMINI_MODELS, Generation, PROMPT_TOKENS, Piece};
use crate::http::Body;
use crate::write::JsonStr;

pub(crate) fn generate_content(body: &mut Body, generation: &Generation<'_>) {
    let buf = body.bytes();
    put!(
        buf,
        r#"{{"candidates":[{{"content":{{"parts":[{{"text":"{}"}}],"role":"model"}},"finishReason":"STOP","index":0}}],"#,
        FullText(generation.chunks),
    );
    write_usage_and_version(buf, generation);
    buf.push(b'}');
}

/// `?alt=sse`: one `data: {chunk}` event per piece; the last carries `finishReason` and usage.
pub(crate) fn stream_sse(body: &mut Body, generation: &Generation<'_>) {
    for index in 0..generation.chunks {
        body.bytes().extend_from_slice(b"data: ");
        write_chunk(body.bytes(), generation, index);
        body.bytes().extend_from_slice(b"\n\n");
        body.end_part();
    }
}

/// Without `alt=sse`: one JSON array, sent an element at a time, as Gemini does.
pub(crate) fn stream_array(body: &mut Body, generation: &Generation<'_>) {
    for index in 0..generation.chunks {
        let opening = if index == 0 { "[" } else { ",\r\n" };
        body.bytes().extend_from_slice(opening.as_bytes());
        write_chunk(body.bytes(), generation, index);
        if index + 1 == generation.chunks {
            body.bytes().push(b']');
        }
        body.end_part();
    }
}

fn write_chunk(buf: &mut Vec<u8>, generation: &Generation<'_>, index: usize) {
    put!(
        buf,
        r#"{{"candidates":[{{"content":{{"parts":[{{"text":"{}"}}],"role":"model"}},"#,
        Piece(index),
    );
    if index + 1 < generation.chunks {
        put!(
            buf,
            r#""index":0}}],"modelVersion":{}}}"#,
            JsonStr(generation.model)
        );
        return;
    }
    buf.extend_from_slice(br#""finishReason":"STOP","index":0}],"#);
    write_usage_and_version(buf, generation);
    buf.push(b'}');
}

fn write_usage_and_version(buf: &mut Vec<u8>, generation: &Generation<'_>) {
    put!(
        buf,
        r#""usageMetadata":{{"promptTokenCount":{PROMPT_TOKENS},"candidatesTokenCount":{},"totalTokenCount":{}}},"modelVersion":{}"#,
        generation.completion_tokens(),
        generation.total_tokens(),
        JsonStr(generation.model),
    );
}

pub(crate) fn model_list(body: &mut Body) {
    let buf = body.bytes();
    buf.extend_from_slice(br#"{"models":["#);
    for (i, model) in GEMINI_MODELS.iter().enumerate() {
        let comma = if i == 0 { "" } else { "," };
        put!(
            buf,
            r#"{comma}{{"name":"models/{model}","version":"001","displayName":"{model}","inputTokenLimit":1048576,"outputTokenLimit":8192,"supportedGenerationMethods":["generateContent","countTokens"]}}"#
        );
    }
    buf.extend_from_slice(b"]}");
}
