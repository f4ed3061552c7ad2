//! Writing the parts of an HTTP/1.1 message into an output buffer: status lines, header lines
//! and chunks. Callers decide which headers to send, framing headers included.

/// The last-chunk plus an empty trailer section: ends a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// The canonical reason phrase of `status` (RFC 9110 §15, plus nginx's 499), or `""` for codes
/// we never send; an empty reason is valid on the wire.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        499 => "Client Closed Request",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// Appends `HTTP/1.1 {status} {reason}\r\n`. A status outside 100..=999 cannot be written as
/// the three digits the grammar requires, so it is written as 500: the client then sees an
/// honest server error instead of an unparseable line.
pub fn write_status_line(out: &mut Vec<u8>, status: u16) {
    let status = if (100..=999).contains(&status) {
        status
    } else {
        500
    };
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(&[
        b'0' + (status / 100) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
        b' ',
    ]);
    out.extend_from_slice(reason_phrase(status).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends `{name}: {value}\r\n`. CR, LF and NUL are written as spaces (RFC 9110 §5.5 allows
/// exactly that replacement): values we inject, such as upstream keys from the database, must
/// never be able to start a new header line or end the head.
pub fn write_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    push_sanitized(out, name.as_bytes());
    out.extend_from_slice(b": ");
    push_sanitized(out, value);
    out.extend_from_slice(b"\r\n");
}

/// Appends `{name}: {value}\r\n` for a field copied from a head httparse accepted, or a
/// constant: httparse refuses CR, LF and NUL in names and values (its `HEADER_VALUE_MAP`; we
/// never enable obsolete line folding), so there is nothing to sanitise, and checking every
/// copied field again was a twentieth of a proxied request. Debug builds check anyway.
pub fn write_parsed_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    debug_assert!(
        !breaks_line(name.as_bytes()) && !breaks_line(value),
        "header {name:?} holds CR, LF or NUL: use write_header"
    );
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends `Content-Length: {len}\r\n`, the number written without going through `fmt`
/// (digits need no sanitising).
pub fn write_content_length(out: &mut Vec<u8>, len: impl itoa::Integer) {
    out.extend_from_slice(b"Content-Length: ");
    out.extend_from_slice(itoa::Buffer::new().format(len).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Whether `bytes` hold a byte that could end a header line or the head: CR, LF or NUL.
fn breaks_line(bytes: &[u8]) -> bool {
    super::lines::any_byte(bytes, |b| matches!(b, b'\r' | b'\n' | 0))
}

/// Header names and values are short, where `memchr3` spends more setting up its search than
/// searching (180 instructions a call, four calls a request); every byte tested at once costs a
/// few dozen.
fn push_sanitized(out: &mut Vec<u8>, bytes: &[u8]) {
    if !breaks_line(bytes) {
        out.extend_from_slice(bytes);
        return;
    }
    out.extend(bytes.iter().map(|&b| match b {
        b'\r' | b'\n' | 0 => b' ',
        _ => b,
    }));
}

/// Appends one chunk, `{len:x}\r\n{data}\r\n`; nothing for empty data, since an empty chunk
/// would be the last-chunk and end the body early.
pub fn write_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    push_hex(out, data.len() as u64, 1);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Lowercase hex of `n`, zero-padded to at least `width` digits, as `format!("{n:0width$x}")`
/// writes it but without going through `fmt`.
pub fn push_hex(out: &mut Vec<u8>, n: u64, width: usize) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; u64::BITS as usize / 4];
    let mut start = buf.len();
    let mut n = n;
    // A u64 has 16 nibbles and each pass consumes one, so `start` stays in bounds;
    // `n & 0xf` is below 16.
    loop {
        start -= 1;
        buf[start] = DIGITS[(n & 0xf) as usize];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    let digits = &buf[start..];
    out.resize(out.len() + width.saturating_sub(digits.len()), b'0');
    out.extend_from_slice(digits);
}

#[cfg(test)]
mod tests {
    use super::super::{ChunkedDecoder, ResponseFraming, parse_response_head};
    use super::*;

    fn text(out: &[u8]) -> &str {
        std::str::from_utf8(out).unwrap()
    }

    #[test]
    fn status_lines() {
        for (status, line) in [
            (200, "HTTP/1.1 200 OK\r\n"),
            (413, "HTTP/1.1 413 Content Too Large\r\n"),
            (414, "HTTP/1.1 414 URI Too Long\r\n"),
            (429, "HTTP/1.1 429 Too Many Requests\r\n"),
            (431, "HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            (499, "HTTP/1.1 499 Client Closed Request\r\n"),
            (503, "HTTP/1.1 503 Service Unavailable\r\n"),
            (504, "HTTP/1.1 504 Gateway Timeout\r\n"),
            (599, "HTTP/1.1 599 \r\n"),
            (42, "HTTP/1.1 500 Internal Server Error\r\n"),
            (1000, "HTTP/1.1 500 Internal Server Error\r\n"),
        ] {
            let mut out = Vec::new();
            write_status_line(&mut out, status);
            assert_eq!(text(&out), line);
        }
    }

    #[test]
    fn headers_cannot_inject_lines() {
        let mut out = Vec::new();
        write_header(&mut out, "Authorization", b"Bearer sk-1");
        write_header(&mut out, "X\r\nEvil", b"a\r\nSet-Cookie: x\0");
        assert_eq!(
            text(&out),
            "Authorization: Bearer sk-1\r\nX  Evil: a  Set-Cookie: x \r\n"
        );
    }

    #[test]
    fn chunks() {
        let mut out = Vec::new();
        write_chunk(&mut out, b"");
        assert!(out.is_empty());
        write_chunk(&mut out, b"hello");
        write_chunk(&mut out, &[b'x'; 26]);
        assert!(out.starts_with(b"5\r\nhello\r\n1a\r\nxxx"));
        out.extend_from_slice(LAST_CHUNK);
        let mut decoded = Vec::new();
        let mut d = ChunkedDecoder::new(u64::MAX);
        assert_eq!(d.decode(&out, &mut decoded), Ok(out.len()));
        assert!(d.is_done());
        assert_eq!(decoded.len(), 31);
    }

    #[test]
    fn hex_is_what_fmt_writes() {
        for n in [
            0u64,
            1,
            15,
            16,
            255,
            4096,
            0xdead_beef,
            0xffff_ffff_ffff,
            u64::MAX,
        ] {
            for width in [1, 8, 12, 20] {
                let mut out = Vec::new();
                push_hex(&mut out, n, width);
                assert_eq!(text(&out), format!("{n:0width$x}"), "{n} at {width}");
            }
        }
    }

    #[test]
    fn parsed_headers_are_written_as_given() {
        let mut out = Vec::new();
        write_parsed_header(&mut out, "X-Obs", b"a\tb \xff");
        assert_eq!(out, b"X-Obs: a\tb \xff\r\n");
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "use write_header")]
    fn a_parsed_header_with_a_line_break_is_a_bug() {
        write_parsed_header(&mut Vec::new(), "X-Bad", b"a\r\nInjected: 1");
    }

    #[test]
    fn content_length_is_decimal() {
        for n in [0usize, 7, 10, 65_535, usize::MAX] {
            let mut out = Vec::new();
            write_content_length(&mut out, n);
            assert_eq!(text(&out), format!("Content-Length: {n}\r\n"));
        }
    }

    #[test]
    fn written_head_parses_back() {
        let mut out = Vec::new();
        write_status_line(&mut out, 429);
        write_header(&mut out, "Content-Length", b"0");
        out.extend_from_slice(b"\r\n");
        let head = parse_response_head(&out, false, 1024).unwrap().unwrap();
        assert_eq!((head.status, &*head.reason), (429, "Too Many Requests"));
        assert_eq!(head.framing, ResponseFraming::Length(0));
    }
}
