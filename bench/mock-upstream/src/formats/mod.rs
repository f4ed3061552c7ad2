//! The canned answers, one module per wire format. Everything is deterministic so that tests can
//! assert exact values:
//!
//! - the reply text has `x-mock-chunks` pieces (default 3): `"chunk0 chunk1 chunk2"`
//!   ([`reply_text`]); a stream sends one piece per content event ([`chunk_text`]);
//! - usage is always [`PROMPT_TOKENS`] in and one token per piece out;
//! - ids are fixed (`chatcmpl-mock`, `resp_mock`, `msg_mock`), `created` is [`CREATED`];
//! - the model is echoed from the request (body `model`, or the Gemini path), or
//!   [`FALLBACK_MODEL`] when the request names none.
//!
//! Bodies are written straight into the connection's reused buffer with `put!`, not built as
//! `serde_json::Value`s: the mock must stay cheaper than the proxy it measures.

pub(crate) mod anthropic;
pub(crate) mod gemini;
pub(crate) mod openai;
pub(crate) mod responses;

use std::fmt;

/// Input tokens reported by every answer.
pub const PROMPT_TOKENS: usize = 10;
/// The `created` timestamp of every OpenAI object.
pub const CREATED: u64 = 1_700_000_000;
/// Echoed when the request body has no `model`.
pub const FALLBACK_MODEL: &str = "mock-model";
/// What `GET …/v1/models` lists.
pub const OPENAI_MODELS: &[&str] = &["gpt-4o-mini", "gpt-4o", "claude-3-5-sonnet-latest"];
/// What `GET …/v1beta/models` lists, without the `models/` prefix.
pub const GEMINI_MODELS: &[&str] = &["gemini-2.0-flash", "gemini-1.5-pro"];

/// The full reply text for `chunks` pieces: `"chunk0 chunk1 …"`.
pub fn reply_text(chunks: usize) -> String {
    (0..chunks).map(chunk_text).collect()
}

/// The text of stream event `index`: `"chunk0"`, then `" chunk1"`, `" chunk2"`, …
pub fn chunk_text(index: usize) -> String {
    Piece(index).to_string()
}

/// One piece of reply text; plain ASCII, so it needs no JSON escaping.
pub(crate) struct Piece(pub(crate) usize);

impl fmt::Display for Piece {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 => f.write_str("chunk0"),
            i => write!(f, " chunk{i}"),
        }
    }
}

/// All pieces of a reply text, for whole replies.
pub(crate) struct FullText(pub(crate) usize);

impl fmt::Display for FullText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (0..self.0).try_for_each(|i| Piece(i).fmt(f))
    }
}

/// What a generation request asked for, as far as the answer depends on it.
pub(crate) struct Generation<'a> {
    pub(crate) model: &'a str,
    pub(crate) chunks: usize,
    /// OpenAI `stream_options.include_usage`.
    pub(crate) include_usage: bool,
}

impl Generation<'_> {
    pub(crate) fn completion_tokens(&self) -> usize {
        self.chunks
    }

    pub(crate) fn total_tokens(&self) -> usize {
        PROMPT_TOKENS + self.chunks
    }
}
