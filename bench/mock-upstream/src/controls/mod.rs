//! How a test steers the mock: request headers (which the proxy forwards unchanged) and the
//! methods of [`crate::MockUpstream`] (failing keys, gates).
//!
//! | header | effect |
//! |---|---|
//! | `x-mock-status: N` | answer N with `x-mock-body` (default: an OpenAI-style error naming N) |
//! | `x-mock-body: TEXT` | the body for `x-mock-status`; served as JSON if it starts with `{` or `[` |
//! | `x-mock-delay-ms: N` | wait N ms before the response head |
//! | `x-mock-chunks: N` | stream N content events (default [`DEFAULT_CHUNKS`], 1..=[`MAX_CHUNKS`]); a whole reply's text has the same N pieces |
//! | `x-mock-chunk-delay-ms: N` | wait N ms before each stream event after the first |
//! | `x-mock-gate: NAME` | stream: send the head and first event, then hold until `open_gate(NAME)`; whole reply: hold before the head |
//! | `x-mock-framing: close` | no `Content-Length` nor chunking: the body ends when the connection closes |
//! | `x-mock-framing: length` | `Content-Length` even for a stream (events still paced and gated) |
//!
//! A malformed control header is answered 400 with an error naming the header.

mod failing_keys;
mod gates;
mod headers;

pub(crate) use failing_keys::FailingKeys;
pub(crate) use gates::Gates;
pub(crate) use headers::{Controls, Framing};

pub const STATUS: &str = "x-mock-status";
pub const BODY: &str = "x-mock-body";
pub const DELAY_MS: &str = "x-mock-delay-ms";
pub const CHUNKS: &str = "x-mock-chunks";
pub const CHUNK_DELAY_MS: &str = "x-mock-chunk-delay-ms";
pub const GATE: &str = "x-mock-gate";
pub const FRAMING: &str = "x-mock-framing";

/// Content events per stream (and text pieces per whole reply) when `x-mock-chunks` is absent.
pub const DEFAULT_CHUNKS: usize = 3;
/// Upper bound for `x-mock-chunks`: a stream is built in memory before it is sent, and 10 000
/// events of ~300 bytes stay around 3 MB.
pub const MAX_CHUNKS: usize = 10_000;
