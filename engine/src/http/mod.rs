//! The HTTP/1.1 codec of the data plane: turns bytes into request and response heads, decodes
//! chunked bodies, and writes status lines, header lines and chunks.
//!
//! It is pure: no sockets, no buffers of its own, no clock. The shard's connection code owns the
//! bytes, calls [`parse_request_head`] / [`parse_response_head`] on what it has buffered so far
//! (`Ok(None)` means "read more"), and feeds bodies through [`ChunkedDecoder`].
//!
//! What it is strict about, and why: every request that reaches us is forwarded to an upstream
//! over a connection we may reuse, so any disagreement between how we and the upstream frame a
//! message would let a client smuggle a second request past authentication. Request heads are
//! therefore parsed to the letter of RFC 9112 (bare CR or LF, obs-fold, duplicate or malformed
//! Content-Length, any Transfer-Encoding but a lone `chunked`, missing Host, ... are all 400),
//! and every limit is enforced on partial input so a slow or endless head cannot pin memory.
//! Response heads come from upstreams we chose, so they are parsed leniently where that cannot
//! change framing (bare LF line ends are accepted) and strictly where it can (Content-Length).
//!
//! What it is not for: routing, header rewriting, or deciding what to forward; callers do that
//! with [`is_hop_by_hop`] and [`connection_tokens`] as the building blocks.

mod chunked;
mod fields;
mod lines;
mod request;
mod response;
mod write;

#[cfg(test)]
mod robustness;

use std::fmt;

pub use chunked::{ChunkedDecoder, ChunkedError};
pub use fields::{connection_tokens, is_hop_by_hop};
pub use request::{BodyFraming, RequestHead, parse_request_head};
pub use response::{ResponseFraming, ResponseHead, parse_response_head};
pub use write::{LAST_CHUNK, reason_phrase, write_chunk, write_header, write_status_line};

/// Bounds on a request head; exceeding one is answered with 414 or 431, never by buffering on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest request line, excluding its CRLF; longer is 414 URI Too Long.
    pub max_request_line: usize,
    /// Largest whole head (leading empty lines, request line, fields and the final CRLFCRLF);
    /// larger is 431 Request Header Fields Too Large.
    pub max_head: usize,
    /// Most header field lines; more is 431 Request Header Fields Too Large.
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // 8 KiB: the common server default (nginx, Apache); our targets are
            // `/proxy/{group}/v1/...` plus a short query, far below it, and a client streaming
            // an endless line is cut off after 8 KiB instead of holding the buffer.
            max_request_line: 8 * 1024,
            // 64 KiB: AI SDKs send a few KiB of headers (auth, content type, telemetry); this
            // leaves room for big cookies or JWTs while bounding what one idle connection pins.
            max_head: 64 * 1024,
            // 128: SDKs send under 40 fields; this bounds the per-request `Vec<Header>` and the
            // work a client can make us do per head.
            max_headers: 128,
        }
    }
}

/// One header field as received: the name keeps its case (forwarded verbatim), the value is
/// trimmed of surrounding whitespace and may hold obs-text, hence bytes rather than `str`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: Box<str>,
    pub value: Box<[u8]>,
}

impl Header {
    fn from_httparse(h: &httparse::Header<'_>) -> Self {
        Header {
            name: h.name.into(),
            value: h.value.into(),
        }
    }
}

/// Why a head was refused; each maps to the status the server answers with before closing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// 400: the head is malformed or its framing is ambiguous; the text says which rule broke.
    BadRequest(&'static str),
    /// 414: the request line is longer than [`Limits::max_request_line`].
    UriTooLong,
    /// 431: the head is larger than [`Limits::max_head`] or has more than
    /// [`Limits::max_headers`] fields.
    HeadersTooLarge,
    /// 505: a well-formed version other than HTTP/1.0 or HTTP/1.1.
    VersionNotSupported,
}

impl HeadError {
    /// The status code to answer with.
    pub fn status(&self) -> u16 {
        match self {
            HeadError::BadRequest(_) => 400,
            HeadError::UriTooLong => 414,
            HeadError::HeadersTooLarge => 431,
            HeadError::VersionNotSupported => 505,
        }
    }

    /// The canonical reason phrase of [`HeadError::status`].
    pub fn reason(&self) -> &'static str {
        reason_phrase(self.status())
    }
}

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status(), self.reason())?;
        match self {
            HeadError::BadRequest(why) => write!(f, ": {why}"),
            HeadError::UriTooLong => f.write_str(": request line exceeds the limit"),
            HeadError::HeadersTooLarge => {
                f.write_str(": head exceeds the size or header-count limit")
            }
            HeadError::VersionNotSupported => {
                f.write_str(": only HTTP/1.0 and HTTP/1.1 are served")
            }
        }
    }
}

impl std::error::Error for HeadError {}

/// The value of the first header named `name` (ASCII case-insensitive).
fn first_header<'a>(headers: &'a [Header], name: &str) -> Option<&'a [u8]> {
    fields::values(headers, name).next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_error_statuses_and_reasons() {
        assert_eq!(HeadError::BadRequest("x").status(), 400);
        assert_eq!(HeadError::UriTooLong.status(), 414);
        assert_eq!(HeadError::HeadersTooLarge.status(), 431);
        assert_eq!(HeadError::VersionNotSupported.status(), 505);
        assert_eq!(HeadError::UriTooLong.reason(), "URI Too Long");
        assert_eq!(
            HeadError::HeadersTooLarge.reason(),
            "Request Header Fields Too Large"
        );
    }

    #[test]
    fn head_error_display_names_the_rule() {
        let e = HeadError::BadRequest("both Content-Length and Transfer-Encoding");
        assert_eq!(
            e.to_string(),
            "400 Bad Request: both Content-Length and Transfer-Encoding"
        );
    }

    #[test]
    fn default_limits() {
        let l = Limits::default();
        assert_eq!(
            (l.max_request_line, l.max_head, l.max_headers),
            (8192, 65536, 128)
        );
    }
}
