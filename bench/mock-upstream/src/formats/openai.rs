//! OpenAI Chat Completions (`…/chat/completions`), the model list (`…/v1/models`) and the
//! OpenAI error object, which is also the mock's own error format.

use super::{CREATED, FullText, Generation, OPENAI_MODELS, PROMPT_TOKENS, Piece};
use crate::http::Body;
use crate::write::JsonStr;

pub(crate) fn chat_completion(body: &mut Body, generation: &Generation<'_>) {
    let buf = body.bytes();
    put!(
        buf,
        r#"{{"id":"chatcmpl-mock","object":"chat.completion","created":{CREATED},"model":{},"choices":[{{"index":0,"message":{{"role":"assistant","content":"{}"}},"logprobs":null,"finish_reason":"stop"}}],"#,
        JsonStr(generation.model),
        FullText(generation.chunks),
    );
    write_usage(buf, generation);
    buf.push(b'}');
}

/// `data: {chunk}` per piece, a usage chunk if asked, then `data: [DONE]`; one part each.
pub(crate) fn chat_completion_stream(body: &mut Body, generation: &Generation<'_>) {
    for index in 0..generation.chunks {
        let role = if index == 0 {
            r#""role":"assistant","#
        } else {
            ""
        };
        let finish = if index + 1 == generation.chunks {
            r#""stop""#
        } else {
            "null"
        };
        put!(
            body.bytes(),
            r#"data: {{"id":"chatcmpl-mock","object":"chat.completion.chunk","created":{CREATED},"model":{},"choices":[{{"index":0,"delta":{{{role}"content":"{}"}},"finish_reason":{finish}}}]}}"#,
            JsonStr(generation.model),
            Piece(index),
        );
        body.bytes().extend_from_slice(b"\n\n");
        body.end_part();
    }
    if generation.include_usage {
        let buf = body.bytes();
        put!(
            buf,
            r#"data: {{"id":"chatcmpl-mock","object":"chat.completion.chunk","created":{CREATED},"model":{},"choices":[],"#,
            JsonStr(generation.model),
        );
        write_usage(buf, generation);
        buf.extend_from_slice(b"}\n\n");
        body.end_part();
    }
    body.bytes().extend_from_slice(b"data: [DONE]\n\n");
    body.end_part();
}

fn write_usage(buf: &mut Vec<u8>, generation: &Generation<'_>) {
    put!(
        buf,
        r#""usage":{{"prompt_tokens":{PROMPT_TOKENS},"completion_tokens":{},"total_tokens":{}}}"#,
        generation.completion_tokens(),
        generation.total_tokens(),
    );
}

pub(crate) fn model_list(body: &mut Body) {
    let buf = body.bytes();
    buf.extend_from_slice(br#"{"object":"list","data":["#);
    for (i, model) in OPENAI_MODELS.iter().enumerate() {
        let comma = if i == 0 { "" } else { "," };
        put!(
            buf,
            r#"{comma}{{"id":"{model}","object":"model","created":{CREATED},"owned_by":"mock-upstream"}}"#
        );
    }
    buf.extend_from_slice(b"]}");
}

/// `{"error":{"message":…,"type":…,"code":…}}`, the shape every OpenAI client understands.
pub(crate) fn error(body: &mut Body, message: &str, kind: &str, code: &str) {
    put!(
        body.bytes(),
        r#"{{"error":{{"message":{},"type":{},"param":null,"code":{}}}}}"#,
        JsonStr(message),
        JsonStr(kind),
        JsonStr(code),
    );
}
