//! Anthropic Messages (`…/v1/messages`).

use super::{FullText, Generation, PROMPT_TOKENS, Piece};
use crate::http::Body;
use crate::write::JsonStr;

pub(crate) fn message(body: &mut Body, generation: &Generation<'_>) {
    put!(
        body.bytes(),
        r#"{{"id":"msg_mock","type":"message","role":"assistant","model":{},"content":[{{"type":"text","text":"{}"}}],"stop_reason":"end_turn","stop_sequence":null,"usage":{{"input_tokens":{PROMPT_TOKENS},"output_tokens":{}}}}}"#,
        JsonStr(generation.model),
        FullText(generation.chunks),
        generation.completion_tokens(),
    );
}

/// `message_start`, `content_block_start`, one `content_block_delta` per piece,
/// `content_block_stop`, `message_delta` (with usage), `message_stop`; one part each.
pub(crate) fn message_stream(body: &mut Body, generation: &Generation<'_>) {
    put!(
        body.bytes(),
        "event: message_start\ndata: {{\"type\":\"message_start\",\"message\":{{\"id\":\"msg_mock\",\"type\":\"message\",\"role\":\"assistant\",\"model\":{},\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{{\"input_tokens\":{PROMPT_TOKENS},\"output_tokens\":1}}}}}}\n\n",
        JsonStr(generation.model),
    );
    body.end_part();
    event(
        body,
        "content_block_start",
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
    );
    for index in 0..generation.chunks {
        put!(
            body.bytes(),
            "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"{}\"}}}}\n\n",
            Piece(index),
        );
        body.end_part();
    }
    event(
        body,
        "content_block_stop",
        r#"{"type":"content_block_stop","index":0}"#,
    );
    put!(
        body.bytes(),
        "event: message_delta\ndata: {{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"end_turn\",\"stop_sequence\":null}},\"usage\":{{\"output_tokens\":{}}}}}\n\n",
        generation.completion_tokens(),
    );
    body.end_part();
    event(body, "message_stop", r#"{"type":"message_stop"}"#);
}

fn event(body: &mut Body, name: &str, data: &str) {
    put!(body.bytes(), "event: {name}\ndata: {data}\n\n");
    body.end_part();
}
