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
pub use write::{
    LAST_CHUNK, push_hex, reason_phrase, write_chunk, write_content_length, write_header,
    write_parsed_header, write_status_line,
};

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    pub name: &'a str,
    pub value: &'a [u8],
}

/// The field lines of a head, in order, in three allocations whatever their number: the names
/// end to end, the values end to end, and where each starts. A copy per field, as a
/// `Vec<(String, Vec<u8>)>` would make, was two allocations per header on every request and
/// response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    names: String,
    values: Vec<u8>,
    /// Per field: where its name and its value end in `names` and `values`.
    ends: Vec<(u32, u32)>,
}

impl Headers {
    fn from_httparse(fields: &[httparse::Header<'_>]) -> Self {
        Self::from_pairs(fields.iter().map(|h| (h.name, h.value)))
    }

    /// Headers from `(name, value)` pairs, in order.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a [u8])> + Clone) -> Self {
        let (mut names_len, mut values_len, mut count) = (0, 0, 0);
        for (name, value) in pairs.clone() {
            names_len += name.len();
            values_len += value.len();
            count += 1;
        }
        let mut headers = Headers {
            names: String::with_capacity(names_len),
            values: Vec::with_capacity(values_len),
            ends: Vec::with_capacity(count),
        };
        for (name, value) in pairs {
            headers.names.push_str(name);
            headers.values.extend_from_slice(value);
            // Heads are bounded far below 4 GiB (`Limits::max_head`, `MAX_RESPONSE_HEAD`).
            let end = |len: usize| u32::try_from(len).unwrap_or(u32::MAX);
            headers
                .ends
                .push((end(headers.names.len()), end(headers.values.len())));
        }
        headers
    }

    /// The fields in order of arrival.
    pub fn iter(&self) -> HeaderIter<'_> {
        HeaderIter {
            headers: self,
            index: 0,
            name_start: 0,
            value_start: 0,
        }
    }

    /// The values of every field named `name` (ASCII case-insensitive), in order. Walks the
    /// names as bytes, comparing lengths first: a request looks fields up by name a dozen
    /// times, and building each `&str` on the way (with its character-boundary checks) was
    /// most of what a lookup cost.
    pub fn values_of<'a, 'n>(
        &'a self,
        name: &'n str,
    ) -> impl Iterator<Item = &'a [u8]> + use<'a, 'n> {
        let (names, values) = (self.names.as_bytes(), &self.values[..]);
        let mut starts = (0usize, 0usize);
        self.ends.iter().filter_map(move |&(name_end, value_end)| {
            let (name_end, value_end) = (name_end as usize, value_end as usize);
            let (name_start, value_start) = std::mem::replace(&mut starts, (name_end, value_end));
            let field = names.get(name_start..name_end)?;
            if field.len() != name.len() || !field.eq_ignore_ascii_case(name.as_bytes()) {
                return None;
            }
            values.get(value_start..value_end)
        })
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = Header<'a>;
    type IntoIter = HeaderIter<'a>;

    fn into_iter(self) -> HeaderIter<'a> {
        self.iter()
    }
}

/// The fields of [`Headers`], in order.
#[derive(Clone)]
pub struct HeaderIter<'a> {
    headers: &'a Headers,
    index: usize,
    name_start: usize,
    value_start: usize,
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = Header<'a>;

    fn next(&mut self) -> Option<Header<'a>> {
        let &(name_end, value_end) = self.headers.ends.get(self.index)?;
        let (name_end, value_end) = (name_end as usize, value_end as usize);
        let header = Header {
            name: self
                .headers
                .names
                .get(self.name_start..name_end)
                .unwrap_or_default(),
            value: self
                .headers
                .values
                .get(self.value_start..value_end)
                .unwrap_or_default(),
        };
        self.index += 1;
        self.name_start = name_end;
        self.value_start = value_end;
        Some(header)
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
fn first_header<'a>(headers: &'a Headers, name: &str) -> Option<&'a [u8]> {
    headers.values_of(name).next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_keep_order_case_and_empty_values() {
        let pairs: [(&str, &[u8]); 4] = [
            ("Host", b"a"),
            ("X-Empty", b""),
            ("x-obs", b"\xff\xfe"),
            ("host", b"b"),
        ];
        let headers = Headers::from_pairs(pairs);
        assert_eq!(headers.len(), 4);
        let back: Vec<(&str, &[u8])> = headers.iter().map(|h| (h.name, h.value)).collect();
        assert_eq!(back, pairs);
        assert_eq!(first_header(&headers, "HOST"), Some(&b"a"[..]));
        assert_eq!(first_header(&headers, "x-empty"), Some(&b""[..]));
        assert_eq!(first_header(&headers, "missing"), None);
        let hosts: Vec<&[u8]> = headers.values_of("HOST").collect();
        assert_eq!(hosts, [&b"a"[..], &b"b"[..]]);
        assert_eq!(
            headers.values_of("x-OBS").collect::<Vec<_>>(),
            [&b"\xff\xfe"[..]]
        );
        assert_eq!(
            headers.values_of("hos").count(),
            0,
            "a prefix is not the name"
        );
        assert!(Headers::default().is_empty());
        assert_eq!(Headers::default().iter().next(), None);
    }

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
