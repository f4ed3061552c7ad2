//! Request heads from clients: the request line, the fields, and the framing and connection
//! decisions that follow from them, all checked per RFC 9112 so that we and the upstream can
//! never disagree on where a request ends.

use super::lines::{HeadLines, any_byte, is_ctl, is_tchar, scan_request_head};
use super::{HeadError, Headers, Limits, fields, first_header};

/// How a request's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No Content-Length and no Transfer-Encoding: the request has no body.
    None,
    /// Exactly this many bytes follow the head (`Length(0)` is kept distinct from `None` so a
    /// forwarded request can repeat the client's `Content-Length: 0`).
    Length(u64),
    /// `Transfer-Encoding: chunked`; decode with [`super::ChunkedDecoder`].
    Chunked,
}

/// A parsed and validated request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// The method token as sent (methods are case-sensitive).
    pub method: Box<str>,
    /// The target in origin-form (`/path?query`), or `*` for `OPTIONS *`.
    pub target: Box<str>,
    /// The authority of an absolute-form target (`http://host:port/p` gives `host:port`); RFC
    /// 9112 §3.2.2 says it overrides Host.
    pub authority: Option<Box<str>>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// Every field line, in order, names as received.
    pub headers: Headers,
    pub framing: BodyFraming,
    /// Whether the client expects the connection to stay open after this exchange.
    pub keep_alive: bool,
    /// `Expect: 100-continue` on an HTTP/1.1 request (RFC 9110 §10.1.1 says to ignore it on 1.0).
    pub expect_continue: bool,
    /// Bytes of the buffer the head used, final CRLFCRLF included; the body or the next
    /// pipelined request starts here.
    pub head_len: usize,
}

impl RequestHead {
    /// The value of the first header named `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        first_header(&self.headers, name)
    }
}

/// Parses the request head at the start of `buf`. `Ok(None)` means the head is incomplete but
/// within `limits`: read more and call again with the grown buffer. Bytes after the head are
/// left alone.
pub fn parse_request_head(buf: &[u8], limits: &Limits) -> Result<Option<RequestHead>, HeadError> {
    let Some(lines) = scan_request_head(buf, limits)? else {
        return Ok(None);
    };
    let line = buf
        .get(lines.request_line_start..lines.request_line_end)
        .unwrap_or_default();
    let request_line = parse_request_line(line)?;
    let headers = parse_fields(buf, &lines)?;
    let minor_version = request_line.minor_version;
    check_host(&headers, minor_version)?;
    let framing = body_framing(&headers, minor_version)?;
    let expect_continue = minor_version >= 1
        && first_header(&headers, "expect")
            .is_some_and(|v| fields::trim_ows(v).eq_ignore_ascii_case(b"100-continue"));
    Ok(Some(RequestHead {
        method: request_line.method.into(),
        target: request_line.target.origin_form,
        authority: request_line.target.authority,
        minor_version,
        keep_alive: fields::wants_keep_alive(&headers, minor_version),
        headers,
        framing,
        expect_continue,
        head_len: lines.head_len,
    }))
}

struct RequestLine<'a> {
    method: &'a str,
    target: Target,
    minor_version: u8,
}

/// `method SP request-target SP HTTP-version`, single spaces only (RFC 9112 §3).
fn parse_request_line(line: &[u8]) -> Result<RequestLine<'_>, HeadError> {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::BadRequest(
            "request line is not 'method SP target SP version'",
        ));
    };
    // The version is checked first so an HTTP/2 preface (`PRI * HTTP/2.0`) gets 505.
    let minor_version = parse_version(version)?;
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Err(HeadError::BadRequest("method is not a token"));
    }
    // A token is ASCII, so this cannot fail; the fallback only avoids an unwrap.
    let method = std::str::from_utf8(method).unwrap_or_default();
    let target = parse_target(target, method)?;
    Ok(RequestLine {
        method,
        target,
        minor_version,
    })
}

/// `HTTP/1.0` or `HTTP/1.1` gives the minor version; another well-formed `HTTP/d.d` is 505.
fn parse_version(version: &[u8]) -> Result<u8, HeadError> {
    match version {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            match (major, minor) {
                (b'1', b'0' | b'1') => Ok(minor - b'0'),
                _ => Err(HeadError::VersionNotSupported),
            }
        }
        _ => Err(HeadError::BadRequest("malformed HTTP version")),
    }
}

/// A request target reduced to what the proxy routes on.
struct Target {
    origin_form: Box<str>,
    authority: Option<Box<str>>,
}

/// Accepts origin-form, absolute-form (http/https, converted to origin-form) and, for OPTIONS
/// only, asterisk-form (RFC 9112 §3.2). Authority-form is CONNECT's, which we do not tunnel.
fn parse_target(raw: &[u8], method: &str) -> Result<Target, HeadError> {
    let target = check_target_bytes(raw)?;
    if target.starts_with('/') {
        return Ok(Target {
            origin_form: target.into(),
            authority: None,
        });
    }
    if target == "*" {
        if method != "OPTIONS" {
            return Err(HeadError::BadRequest(
                "asterisk-form target outside OPTIONS",
            ));
        }
        return Ok(Target {
            origin_form: target.into(),
            authority: None,
        });
    }
    absolute_form(target)
}

/// The target must be visible ASCII or UTF-8 text (raw UTF-8 paths are common enough from
/// clients that refusing them would break users), with no fragment.
fn check_target_bytes(raw: &[u8]) -> Result<&str, HeadError> {
    if raw.is_empty() {
        return Err(HeadError::BadRequest("empty request target"));
    }
    // One pass over the target; which message (NUL before other controls before a
    // fragment), only once something is wrong.
    if any_byte(raw, |b| is_ctl(b) || b == b'#') {
        return Err(HeadError::BadRequest(if raw.contains(&0) {
            "NUL in request target"
        } else if raw.iter().any(|&b| is_ctl(b)) {
            "control character in request target"
        } else {
            "fragment in request target"
        }));
    }
    std::str::from_utf8(raw).map_err(|_| HeadError::BadRequest("request target is not UTF-8"))
}

/// `http://authority/path?query` → `/path?query` plus the authority.
fn absolute_form(target: &str) -> Result<Target, HeadError> {
    const NOT_A_FORM: HeadError =
        HeadError::BadRequest("request target is not origin-form, absolute-form or asterisk-form");
    let (scheme, rest) = target.split_once("://").ok_or(NOT_A_FORM)?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(HeadError::BadRequest(
            "absolute-form target with a scheme other than http or https",
        ));
    }
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path_and_query) = rest.split_at(authority_end);
    if authority.is_empty() {
        return Err(HeadError::BadRequest("absolute-form target without a host"));
    }
    if authority.contains('@') {
        // RFC 9110 §4.2.4: userinfo in an http(s) URI is to be treated as an error.
        return Err(HeadError::BadRequest("userinfo in request target"));
    }
    let origin_form = if path_and_query.starts_with('/') {
        path_and_query.into()
    } else {
        format!("/{path_and_query}").into()
    };
    Ok(Target {
        origin_form,
        authority: Some(authority.into()),
    })
}

/// Splits the already line-checked field lines with httparse.
fn parse_fields(buf: &[u8], lines: &HeadLines) -> Result<Headers, HeadError> {
    let fields = buf
        .get(lines.request_line_end + 2..lines.head_len)
        .unwrap_or_default();
    // Most requests carry well under 32 fields: slots on the stack (1 KiB) spare an
    // allocation per request; the line scan has counted them, so more get exactly that many.
    let mut on_stack = [httparse::EMPTY_HEADER; 32];
    let mut on_heap;
    let slots = match on_stack.get_mut(..lines.field_count) {
        Some(slots) => slots,
        None => {
            on_heap = vec![httparse::EMPTY_HEADER; lines.field_count];
            &mut on_heap[..]
        }
    };
    match httparse::parse_headers(fields, slots) {
        Ok(httparse::Status::Complete((_, found))) if found.len() == lines.field_count => {
            Ok(Headers::from_httparse(found))
        }
        // The line scan admits only lines httparse accepts; reaching this means the two
        // disagree, and refusing is the safe answer.
        _ => Err(HeadError::BadRequest("header fields could not be parsed")),
    }
}

/// RFC 9112 §3.2: HTTP/1.1 needs exactly one Host; no version may send two.
fn check_host(headers: &Headers, minor_version: u8) -> Result<(), HeadError> {
    match headers.values_of("host").count() {
        0 if minor_version >= 1 => Err(HeadError::BadRequest("HTTP/1.1 request without Host")),
        0 | 1 => Ok(()),
        _ => Err(HeadError::BadRequest("more than one Host header")),
    }
}

/// RFC 9112 §6.1 and §6.3, with every ambiguous case refused instead of resolved.
fn body_framing(headers: &Headers, minor_version: u8) -> Result<BodyFraming, HeadError> {
    let length = fields::content_length(headers).map_err(HeadError::BadRequest)?;
    if !fields::has_transfer_encoding(headers) {
        return Ok(length.map_or(BodyFraming::None, BodyFraming::Length));
    }
    if minor_version == 0 {
        return Err(HeadError::BadRequest(
            "Transfer-Encoding in an HTTP/1.0 request",
        ));
    }
    if length.is_some() {
        return Err(HeadError::BadRequest(
            "both Content-Length and Transfer-Encoding",
        ));
    }
    fields::request_transfer_encoding_is_chunked(headers).map_err(HeadError::BadRequest)?;
    Ok(BodyFraming::Chunked)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(buf: &[u8]) -> Result<Option<RequestHead>, HeadError> {
        parse_request_head(buf, &Limits::default())
    }

    fn ok(buf: &[u8]) -> RequestHead {
        match parse(buf) {
            Ok(Some(head)) => head,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
        }
    }

    /// Asserts a 400 whose reason mentions `why`.
    fn rejects(buf: &[u8], why: &str) {
        match parse(buf) {
            Err(HeadError::BadRequest(msg)) => assert!(
                msg.contains(why),
                "{:?}: got '{msg}', wanted '{why}'",
                String::from_utf8_lossy(buf)
            ),
            other => panic!(
                "{:?}: got {other:?}, wanted 400 '{why}'",
                String::from_utf8_lossy(buf)
            ),
        }
    }

    /// A POST with the given extra field lines (each ending in CRLF).
    fn post(fields: &str) -> Vec<u8> {
        format!("POST /v1/chat HTTP/1.1\r\nHost: a\r\n{fields}\r\n").into_bytes()
    }

    /// Up to 32 fields are parsed into slots on the stack, more into as many on the heap:
    /// every field arrives, in order, either way.
    #[test]
    fn heads_with_few_and_many_fields_keep_them_all() {
        for extra in [31, 32, 33, 100] {
            let fields: String = (0..extra).map(|i| format!("X-F{i}: v{i}\r\n")).collect();
            let head = ok(&post(&fields));
            assert_eq!(head.headers.len(), extra + 1, "{extra} extra fields");
            let last = format!("v{}", extra - 1);
            let name = format!("x-f{}", extra - 1);
            assert_eq!(head.header(&name), Some(last.as_bytes()));
            assert_eq!(head.header("host"), Some(&b"a"[..]));
        }
    }

    #[test]
    fn simple_get() {
        let head = ok(b"GET /v1/models?x=1 HTTP/1.1\r\nHost: api\r\nAccept: */*\r\n\r\n");
        assert_eq!(&*head.method, "GET");
        assert_eq!(&*head.target, "/v1/models?x=1");
        assert_eq!(head.authority, None);
        assert_eq!(head.minor_version, 1);
        assert_eq!(head.headers.len(), 2);
        assert_eq!(head.headers.iter().nth(1).map(|h| h.name), Some("Accept"));
        assert_eq!(head.framing, BodyFraming::None);
        assert!(head.keep_alive);
        assert!(!head.expect_continue);
        assert_eq!(head.header("HOST"), Some(&b"api"[..]));
        assert_eq!(head.header("missing"), None);
    }

    #[test]
    fn header_returns_first_of_repeats_and_trims() {
        let head = ok(&post("X-A:  one \r\nx-a: two\r\n"));
        assert_eq!(head.header("x-A"), Some(&b"one"[..]));
    }

    #[test]
    fn pipelined_bytes_are_untouched() {
        let first = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n";
        let mut buf = first.to_vec();
        buf.extend_from_slice(b"GET /b HTTP/1.1\r\nHost: h\r\n\r\n");
        let head = ok(&buf);
        assert_eq!(head.head_len, first.len());
        assert_eq!(&*ok(&buf[head.head_len..]).target, "/b");
    }

    #[test]
    fn head_len_counts_skipped_empty_lines() {
        let buf = b"\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\nbody";
        assert_eq!(&buf[ok(buf).head_len..], b"body");
    }

    #[test]
    fn incomplete_is_none() {
        let full = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n";
        for end in 0..full.len() {
            assert_eq!(parse(&full[..end]), Ok(None), "prefix of {end}");
        }
        assert!(parse(full).unwrap().is_some());
    }

    #[test]
    fn absolute_form_becomes_origin_form() {
        let cases = [
            (
                "http://api.example:8080/v1/x?q=1",
                "/v1/x?q=1",
                "api.example:8080",
            ),
            ("HTTPS://h/", "/", "h"),
            ("http://h", "/", "h"),
            ("http://h?q", "/?q", "h"),
        ];
        for (target, origin, authority) in cases {
            let head = ok(format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes());
            assert_eq!(&*head.target, origin, "{target}");
            assert_eq!(head.authority.as_deref(), Some(authority), "{target}");
        }
    }

    #[test]
    fn bad_absolute_forms() {
        rejects(b"GET ftp://h/x HTTP/1.1\r\nHost: h\r\n\r\n", "scheme");
        rejects(
            b"GET http:///x HTTP/1.1\r\nHost: h\r\n\r\n",
            "without a host",
        );
        rejects(
            b"GET http://u:p@h/x HTTP/1.1\r\nHost: h\r\n\r\n",
            "userinfo",
        );
    }

    #[test]
    fn asterisk_only_for_options() {
        assert_eq!(&*ok(b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n").target, "*");
        rejects(b"GET * HTTP/1.1\r\nHost: h\r\n\r\n", "asterisk");
    }

    #[test]
    fn other_target_forms_are_refused() {
        rejects(b"CONNECT h:443 HTTP/1.1\r\nHost: h\r\n\r\n", "origin-form");
        rejects(b"GET v1/x HTTP/1.1\r\nHost: h\r\n\r\n", "origin-form");
        rejects(b"GET /a#frag HTTP/1.1\r\nHost: h\r\n\r\n", "fragment");
    }

    #[test]
    fn target_bytes() {
        rejects(b"GET /a\0b HTTP/1.1\r\nHost: h\r\n\r\n", "NUL");
        rejects(b"GET /a\x7fb HTTP/1.1\r\nHost: h\r\n\r\n", "control");
        rejects(b"GET /a\tb HTTP/1.1\r\nHost: h\r\n\r\n", "control");
        rejects(b"GET /\xff HTTP/1.1\r\nHost: h\r\n\r\n", "UTF-8");
        assert_eq!(
            &*ok("GET /caf\u{e9} HTTP/1.1\r\nHost: h\r\n\r\n".as_bytes()).target,
            "/caf\u{e9}"
        );
    }

    #[test]
    fn request_line_shape() {
        rejects(b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n", "method SP target");
        rejects(b"GET / HTTP/1.1 \r\nHost: h\r\n\r\n", "method SP target");
        rejects(b"GET /\r\nHost: h\r\n\r\n", "method SP target");
        rejects(
            b"G(T / HTTP/1.1\r\nHost: h\r\n\r\n",
            "method is not a token",
        );
        rejects(
            b"GET / http/1.1\r\nHost: h\r\n\r\n",
            "malformed HTTP version",
        );
        rejects(
            b"GET / HTTP/1.10\r\nHost: h\r\n\r\n",
            "malformed HTTP version",
        );
    }

    #[test]
    fn unsupported_versions_are_505() {
        for v in ["HTTP/2.0", "HTTP/0.9", "HTTP/1.2", "HTTP/3.0"] {
            let buf = format!("GET / {v}\r\nHost: h\r\n\r\n");
            assert_eq!(
                parse(buf.as_bytes()),
                Err(HeadError::VersionNotSupported),
                "{v}"
            );
        }
        assert_eq!(
            parse(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
            Err(HeadError::VersionNotSupported)
        );
    }

    #[test]
    fn host_rules() {
        rejects(b"GET / HTTP/1.1\r\n\r\n", "without Host");
        rejects(
            b"GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n",
            "more than one Host",
        );
        rejects(
            b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
            "more than one Host",
        );
        assert_eq!(ok(b"GET / HTTP/1.0\r\n\r\n").minor_version, 0);
    }

    #[test]
    fn content_length_framing() {
        assert_eq!(
            ok(&post("Content-Length: 42\r\n")).framing,
            BodyFraming::Length(42)
        );
        assert_eq!(
            ok(&post("Content-Length: 0\r\n")).framing,
            BodyFraming::Length(0)
        );
        let same = post("Content-Length: 7\r\ncontent-length: 7\r\n");
        assert_eq!(ok(&same).framing, BodyFraming::Length(7));
        assert_eq!(
            ok(&post("Content-Length: 7, 7\r\n")).framing,
            BodyFraming::Length(7)
        );
    }

    #[test]
    fn content_length_must_be_digits() {
        for bad in ["+5", "-5", "5 5", "0x10", "a", "", "1.0"] {
            rejects(
                &post(&format!("Content-Length: {bad}\r\n")),
                "not a decimal",
            );
        }
    }

    #[test]
    fn content_length_overflow() {
        rejects(
            &post("Content-Length: 18446744073709551616\r\n"),
            "overflows",
        );
        let max = post("Content-Length: 18446744073709551615\r\n");
        assert_eq!(ok(&max).framing, BodyFraming::Length(u64::MAX));
    }

    #[test]
    fn differing_content_lengths() {
        rejects(
            &post("Content-Length: 5\r\nContent-Length: 6\r\n"),
            "differ",
        );
        rejects(&post("Content-Length: 5, 6\r\n"), "differ");
    }

    #[test]
    fn chunked_framing_case_insensitive() {
        for te in ["chunked", "Chunked", "CHUNKED", " chunked\t"] {
            let head = ok(&post(&format!("Transfer-Encoding: {te}\r\n")));
            assert_eq!(head.framing, BodyFraming::Chunked, "{te:?}");
        }
    }

    #[test]
    fn content_length_with_transfer_encoding() {
        rejects(
            &post("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"),
            "both Content-Length and Transfer-Encoding",
        );
        rejects(
            &post("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"),
            "both Content-Length and Transfer-Encoding",
        );
    }

    #[test]
    fn transfer_encoding_in_http_1_0() {
        rejects(
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.0",
        );
    }

    #[test]
    fn transfer_encoding_other_than_lone_chunked() {
        for te in [
            "chunked, identity",
            "gzip, chunked",
            "xchunked",
            "chunk",
            "identity",
        ] {
            rejects(
                &post(&format!("Transfer-Encoding: {te}\r\n")),
                "exactly 'chunked'",
            );
        }
        rejects(&post("Transfer-Encoding:\r\n"), "exactly 'chunked'");
        rejects(
            &post("Transfer-Encoding: chunked\x0b\r\n"),
            "control character",
        );
        rejects(
            &post("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"),
            "more than one Transfer-Encoding",
        );
    }

    #[test]
    fn keep_alive_rules() {
        let get = |v: &str, conn: &str| {
            ok(format!("GET / HTTP/1.{v}\r\nHost: h\r\n{conn}\r\n").as_bytes()).keep_alive
        };
        assert!(get("1", ""));
        assert!(!get("1", "Connection: close\r\n"));
        assert!(!get("1", "Connection: upgrade, CLOSE\r\n"));
        assert!(!get("1", "Connection: x\r\nConnection: close\r\n"));
        assert!(get("1", "Connection: closed\r\n"));
        assert!(!get("0", ""));
        assert!(get("0", "Connection: Keep-Alive\r\n"));
        assert!(get("0", "Connection: foo,keep-alive\r\n"));
    }

    #[test]
    fn expect_continue() {
        assert!(ok(&post("Expect: 100-Continue\r\nContent-Length: 1\r\n")).expect_continue);
        assert!(!ok(&post("Expect: 200-ok\r\n")).expect_continue);
        let v10 = b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n";
        assert!(!ok(v10).expect_continue);
    }

    #[test]
    fn field_rules_reach_the_parser() {
        rejects(&post(" X: folded\r\n"), "obs-fold");
        rejects(&post("X: a\r\n\tfolded\r\n"), "obs-fold");
        rejects(&post("Content-Length : 5\r\n"), "whitespace between");
        rejects(&post(": 5\r\n"), "empty header field name");
        rejects(&post("X@Y: 5\r\n"), "invalid character");
        rejects(&post("X: a\0\r\n"), "NUL");
        rejects(b"GET / HTTP/1.1\nHost: h\r\n\r\n", "LF without");
        rejects(
            b"GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n",
            "CR not followed",
        );
    }

    #[test]
    fn limits_on_complete_and_partial_input() {
        let limits = Limits {
            max_request_line: 20,
            max_head: 60,
            max_headers: 2,
        };
        let p = |b: &[u8]| parse_request_head(b, &limits);
        assert_eq!(p(b"GET /aaaaaaaaaaaaaaaaaaaaa"), Err(HeadError::UriTooLong));
        assert_eq!(p(b"GET /aaaaa HTTP/1.1\r\nHost: h\r\n"), Ok(None));
        assert_eq!(
            p(b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n"),
            Err(HeadError::HeadersTooLarge)
        );
        assert_eq!(
            p(b"GET / HTTP/1.1\r\nHost: hhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhh"),
            Err(HeadError::HeadersTooLarge)
        );
    }
}
