//! Response heads from upstreams and how their bodies are delimited (RFC 9112 §6.3).
//!
//! Upstreams are servers we chose, so line syntax is taken as httparse takes it (bare LF line
//! ends pass); what decides framing — status, Content-Length, Transfer-Encoding — is strict,
//! because a misread length would splice one response into the next on a reused connection.

use memchr::memchr_iter;

use super::{HeadError, Headers, fields, first_header};

/// How a response's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFraming {
    /// No body: a response to HEAD, or a 1xx, 204 or 304.
    Empty,
    /// Exactly this many bytes follow the head.
    Length(u64),
    /// Chunked; decode with [`super::ChunkedDecoder`].
    Chunked,
    /// The body runs until the upstream closes the connection.
    UntilClose,
}

/// A parsed response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    /// The reason phrase as sent (may be empty; not used for anything but logs).
    pub reason: Box<str>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    pub headers: Headers,
    pub framing: ResponseFraming,
    /// Whether the upstream connection may be reused after this response's body.
    pub keep_alive: bool,
    /// Bytes of the buffer the head used; the body starts here.
    pub head_len: usize,
}

impl ResponseHead {
    /// The value of the first header named `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        first_header(&self.headers, name)
    }

    /// A 1xx other than 101: an interim response (e.g. 100 Continue) that the caller skips
    /// before parsing the final response that follows it.
    pub fn is_interim(&self) -> bool {
        (100..200).contains(&self.status) && self.status != 101
    }
}

/// Parses the response head at the start of `buf`. `request_was_head` must say whether the
/// request was HEAD, since that alone decides that the body is empty. `Ok(None)` means read
/// more; a head larger than `max_head` is [`HeadError::HeadersTooLarge`] even while incomplete.
pub fn parse_response_head(
    buf: &[u8],
    request_was_head: bool,
    max_head: usize,
) -> Result<Option<ResponseHead>, HeadError> {
    // Nothing past max_head can belong to an acceptable head, so httparse never sees it.
    let window = buf.get(..max_head).unwrap_or(buf);
    let Some(raw) = parse_raw(window)? else {
        if buf.len() > max_head {
            return Err(HeadError::HeadersTooLarge);
        }
        return Ok(None);
    };
    if raw.status < 100 {
        return Err(HeadError::BadRequest("response status below 100"));
    }
    let framing = response_framing(
        &raw.headers,
        raw.status,
        raw.minor_version,
        request_was_head,
    )?;
    Ok(Some(ResponseHead {
        status: raw.status,
        reason: raw.reason,
        minor_version: raw.minor_version,
        keep_alive: keeps_alive(&raw.headers, raw.status, raw.minor_version, framing),
        headers: raw.headers,
        framing,
        head_len: raw.head_len,
    }))
}

/// What httparse read, copied out of the buffer.
struct RawResponse {
    status: u16,
    reason: Box<str>,
    minor_version: u8,
    headers: Headers,
    head_len: usize,
}

/// Runs httparse over `window`; `None` if the head is incomplete.
fn parse_raw(window: &[u8]) -> Result<Option<RawResponse>, HeadError> {
    // Upstream responses carry well under 64 fields, so that many slots on the stack (2 KiB)
    // serve nearly every head without allocating.
    let mut slots = [httparse::EMPTY_HEADER; 64];
    match parse_into(window, &mut slots) {
        Err(httparse::Error::TooManyHeaders) => {
            // Every field line ends in LF, so this many slots always suffice.
            let mut slots = vec![httparse::EMPTY_HEADER; memchr_iter(b'\n', window).count()];
            parse_into(window, &mut slots).map_err(from_httparse_error)
        }
        other => other.map_err(from_httparse_error),
    }
}

fn parse_into<'b>(
    window: &'b [u8],
    slots: &mut [httparse::Header<'b>],
) -> Result<Option<RawResponse>, httparse::Error> {
    let mut response = httparse::Response::new(slots);
    let httparse::Status::Complete(head_len) = response.parse(window)? else {
        return Ok(None);
    };
    let (Some(status), Some(minor_version)) = (response.code, response.version) else {
        // httparse sets both on Complete; treat a head without them as malformed.
        return Err(httparse::Error::Status);
    };
    Ok(Some(RawResponse {
        status,
        reason: response.reason.unwrap_or_default().into(),
        minor_version,
        headers: Headers::from_httparse(response.headers),
        head_len,
    }))
}

fn from_httparse_error(e: httparse::Error) -> HeadError {
    HeadError::BadRequest(match e {
        httparse::Error::Version => return HeadError::VersionNotSupported,
        httparse::Error::Status => "invalid response status code",
        httparse::Error::HeaderName => "invalid header field name in response",
        httparse::Error::HeaderValue => "invalid header field value in response",
        httparse::Error::NewLine => "invalid line ending in response head",
        httparse::Error::Token => "invalid reason phrase in response",
        // The counted fallback in parse_raw rules this out; kept total rather than unwrapped.
        httparse::Error::TooManyHeaders => "too many header fields in response",
    })
}

/// RFC 9112 §6.3, items 1–7 in order.
fn response_framing(
    headers: &Headers,
    status: u16,
    minor_version: u8,
    request_was_head: bool,
) -> Result<ResponseFraming, HeadError> {
    if request_was_head || (100..200).contains(&status) || status == 204 || status == 304 {
        return Ok(ResponseFraming::Empty);
    }
    if fields::has_transfer_encoding(headers) {
        if minor_version == 0 {
            // §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing.
            return Err(HeadError::BadRequest(
                "Transfer-Encoding in an HTTP/1.0 response",
            ));
        }
        return Ok(if fields::chunked_is_last(headers) {
            ResponseFraming::Chunked
        } else {
            ResponseFraming::UntilClose
        });
    }
    match fields::content_length(headers).map_err(HeadError::BadRequest)? {
        Some(n) => Ok(ResponseFraming::Length(n)),
        None => Ok(ResponseFraming::UntilClose),
    }
}

/// Reusable only if the version and Connection allow it and the framing leaves no doubt about
/// where the body ends: a body read until close ends the connection, a response carrying both
/// Transfer-Encoding and Content-Length may have been framed differently by someone on the path
/// (§6.3 item 3), and after a 101 the connection no longer speaks HTTP.
fn keeps_alive(
    headers: &Headers,
    status: u16,
    minor_version: u8,
    framing: ResponseFraming,
) -> bool {
    let ambiguous =
        framing == ResponseFraming::Chunked && headers.values_of("content-length").next().is_some();
    fields::wants_keep_alive(headers, minor_version)
        && framing != ResponseFraming::UntilClose
        && !ambiguous
        && status != 101
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 64 * 1024;

    fn ok(buf: &[u8], head: bool) -> ResponseHead {
        match parse_response_head(buf, head, MAX) {
            Ok(Some(h)) => h,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
        }
    }

    fn framing(status_and_fields: &str, head: bool) -> (ResponseFraming, bool) {
        let r = ok(format!("HTTP/1.1 {status_and_fields}\r\n").as_bytes(), head);
        (r.framing, r.keep_alive)
    }

    #[test]
    fn simple_response() {
        let buf =
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
        let r = ok(buf, false);
        assert_eq!((r.status, &*r.reason, r.minor_version), (200, "OK", 1));
        assert_eq!(r.framing, ResponseFraming::Length(2));
        assert!(r.keep_alive);
        assert_eq!(&buf[r.head_len..], b"{}");
        assert_eq!(r.header("content-type"), Some(&b"application/json"[..]));
        assert!(!r.is_interim());
    }

    #[test]
    fn framing_table() {
        use ResponseFraming::*;
        let cases: [(&str, bool, ResponseFraming, bool); 14] = [
            ("200 OK\r\nContent-Length: 5\r\n", true, Empty, true),
            ("100 Continue\r\n", false, Empty, true),
            ("103 Early Hints\r\n", false, Empty, true),
            (
                "204 No Content\r\nContent-Length: 5\r\n",
                false,
                Empty,
                true,
            ),
            (
                "304 Not Modified\r\nTransfer-Encoding: chunked\r\n",
                false,
                Empty,
                true,
            ),
            (
                "200 OK\r\nTransfer-Encoding: gzip, chunked\r\n",
                false,
                Chunked,
                true,
            ),
            (
                "200 OK\r\nTransfer-Encoding: Chunked\r\nContent-Length: 5\r\n",
                false,
                Chunked,
                false,
            ),
            (
                "200 OK\r\nTransfer-Encoding: chunked, gzip\r\n",
                false,
                UntilClose,
                false,
            ),
            (
                "200 OK\r\nTransfer-Encoding: gzip\r\n",
                false,
                UntilClose,
                false,
            ),
            ("200 OK\r\nContent-Length: 5\r\n", false, Length(5), true),
            (
                "200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n",
                false,
                Length(5),
                true,
            ),
            ("200 OK\r\n", false, UntilClose, false),
            (
                "200 OK\r\nConnection: close\r\nContent-Length: 0\r\n",
                false,
                Length(0),
                false,
            ),
            (
                "101 Switching Protocols\r\nUpgrade: websocket\r\n",
                false,
                Empty,
                false,
            ),
        ];
        for (head, was_head, want, keep) in cases {
            assert_eq!(framing(head, was_head), (want, keep), "{head:?}");
        }
    }

    #[test]
    fn http_1_0_keep_alive() {
        let r = ok(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false);
        assert!(!r.keep_alive);
        let r = ok(
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n",
            false,
        );
        assert!(r.keep_alive);
    }

    #[test]
    fn invalid_content_length_is_an_error() {
        for cl in ["abc", "-1", "5, 6", "99999999999999999999"] {
            let buf = format!("HTTP/1.1 200 OK\r\nContent-Length: {cl}\r\n\r\n");
            assert!(
                matches!(
                    parse_response_head(buf.as_bytes(), false, MAX),
                    Err(HeadError::BadRequest(_))
                ),
                "{cl}"
            );
        }
        let buf = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n";
        assert!(parse_response_head(buf, false, MAX).is_err());
    }

    #[test]
    fn transfer_encoding_in_http_1_0_response() {
        let buf = b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(parse_response_head(buf, false, MAX).is_err());
    }

    #[test]
    fn interim_responses() {
        let buf = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        let first = ok(buf, false);
        assert!(first.is_interim());
        let second = ok(&buf[first.head_len..], false);
        assert_eq!(second.status, 200);
        assert!(!second.is_interim());
        assert!(!ok(b"HTTP/1.1 101 Switching Protocols\r\n\r\n", false).is_interim());
    }

    #[test]
    fn lenient_line_endings() {
        let buf = b"HTTP/1.1 200 OK\nContent-Length: 1\n\nx";
        let r = ok(buf, false);
        assert_eq!(r.framing, ResponseFraming::Length(1));
        assert_eq!(&buf[r.head_len..], b"x");
    }

    #[test]
    fn partial_and_oversized() {
        let full = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n";
        for end in 0..full.len() {
            assert_eq!(parse_response_head(&full[..end], false, MAX), Ok(None));
        }
        assert_eq!(
            parse_response_head(&full[..20], false, 10),
            Err(HeadError::HeadersTooLarge)
        );
        assert!(
            parse_response_head(full, false, full.len())
                .unwrap()
                .is_some()
        );
        assert_eq!(
            parse_response_head(full, false, full.len() - 1),
            Err(HeadError::HeadersTooLarge)
        );
    }

    #[test]
    fn bad_status_lines() {
        assert_eq!(
            parse_response_head(b"HTTP/2.0 200 OK\r\n\r\n", false, MAX),
            Err(HeadError::VersionNotSupported)
        );
        for bad in [
            &b"HTTP/1.1 20 OK\r\n\r\n"[..],
            b"HTTP/1.1 099 X\r\n\r\n",
            b"HTTP/1.1 abc\r\n\r\n",
        ] {
            assert!(
                matches!(
                    parse_response_head(bad, false, MAX),
                    Err(HeadError::BadRequest(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn many_headers_fit() {
        let mut buf = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..500 {
            buf.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        buf.extend_from_slice(b"Content-Length: 0\r\n\r\n");
        assert_eq!(ok(&buf, false).headers.len(), 501);
    }
}
