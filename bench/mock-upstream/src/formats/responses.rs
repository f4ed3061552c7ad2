//! OpenAI Responses API (`…/v1/responses`).

use super::{CREATED, FullText, Generation, PROMPT_TOKENS, Piece};
use crate::http::Body;
use crate::write::JsonStr;

pub(crate) fn response(body: &mut Body, generation: &Generation<'_>) {
    write_response(body.bytes(), generation, "completed");
}

/// `response.created`, one `response.output_text.delta` per piece, `response.completed`; each an
/// `event:` + `data:` SSE event in its own part.
pub(crate) fn response_stream(body: &mut Body, generation: &Generation<'_>) {
    body.bytes().extend_from_slice(
        b"event: response.created\ndata: {\"type\":\"response.created\",\"response\":",
    );
    write_response(body.bytes(), generation, "in_progress");
    body.bytes().extend_from_slice(b"}\n\n");
    body.end_part();
    for index in 0..generation.chunks {
        put!(
            body.bytes(),
            "event: response.output_text.delta\ndata: {{\"type\":\"response.output_text.delta\",\"item_id\":\"msg_mock\",\"output_index\":0,\"content_index\":0,\"delta\":\"{}\"}}\n\n",
            Piece(index),
        );
        body.end_part();
    }
    body.bytes().extend_from_slice(
        b"event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":",
    );
    write_response(body.bytes(), generation, "completed");
    body.bytes().extend_from_slice(b"}\n\n");
    body.end_part();
}

/// The response object; while `in_progress` it has no output and no usage yet.
fn write_response(buf: &mut Vec<u8>, generation: &Generation<'_>, status: &str) {
    put!(
        buf,
        r#"{{"id":"resp_mock","object":"response","created_at":{CREATED},"status":"{status}","model":{},"output":["#,
        JsonStr(generation.model),
    );
    if status == "in_progress" {
        buf.extend_from_slice(br#"],"usage":null}"#);
        return;
    }
    put!(
        buf,
        r#"{{"type":"message","id":"msg_mock","status":"completed","role":"assistant","content":[{{"type":"output_text","text":"{}","annotations":[]}}]}}],"usage":{{"input_tokens":{PROMPT_TOKENS},"output_tokens":{},"total_tokens":{}}}}}"#,
        FullText(generation.chunks),
        generation.completion_tokens(),
        generation.total_tokens(),
    );
}
