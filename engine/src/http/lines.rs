//! Finds the lines of a request head and checks them before anything interprets them: every line
//! ends in CRLF (no bare CR or LF anywhere, RFC 9112 §2.2), no field line is folded or malformed,
//! and the size limits hold even while the head is still arriving.
//!
//! httparse accepts bare LF as a line end and reports only "invalid header name"; this pass is
//! where those cases are refused with a precise reason, so httparse only ever sees clean lines.

use memchr::{memchr, memchr2};

use super::{HeadError, Limits};

/// Where the parts of a complete, line-checked request head lie in the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct HeadLines {
    /// First byte of the request line (after any skipped empty lines).
    pub request_line_start: usize,
    /// The CR ending the request line.
    pub request_line_end: usize,
    /// How many field lines follow the request line.
    pub field_count: usize,
    /// Just past the CRLF of the empty line ending the head.
    pub head_len: usize,
}

/// Locates and checks the lines of the head at the start of `buf`; `Ok(None)` means the head is
/// incomplete but within the limits so far.
pub(super) fn scan_request_head(
    buf: &[u8],
    limits: &Limits,
) -> Result<Option<HeadLines>, HeadError> {
    // Nothing past max_head can belong to an acceptable head, so it is never scanned.
    let window = buf.get(..limits.max_head).unwrap_or(buf);
    let too_large = buf.len() > limits.max_head;
    let incomplete = || {
        if too_large {
            Err(HeadError::HeadersTooLarge)
        } else {
            Ok(None)
        }
    };

    let Some(start) = skip_empty_lines(window)? else {
        return incomplete();
    };
    let Some(line_end) = find_line_end(window, start)? else {
        if partial_line_len(window, start) > limits.max_request_line {
            return Err(HeadError::UriTooLong);
        }
        return incomplete();
    };
    if line_end - start > limits.max_request_line {
        return Err(HeadError::UriTooLong);
    }
    match scan_fields(window, line_end + 2, limits.max_headers)? {
        Some((field_count, head_len)) => Ok(Some(HeadLines {
            request_line_start: start,
            request_line_end: line_end,
            field_count,
            head_len,
        })),
        None => incomplete(),
    }
}

/// Skips the empty lines RFC 9112 §2.2 lets a server ignore before the request line; returns the
/// start of the request line, or `None` if only empty lines (or a lone CR) have arrived.
fn skip_empty_lines(buf: &[u8]) -> Result<Option<usize>, HeadError> {
    let mut pos = 0;
    loop {
        match (buf.get(pos), buf.get(pos + 1)) {
            (None, _) | (Some(b'\r'), None) => return Ok(None),
            (Some(b'\r'), Some(b'\n')) => pos += 2,
            (Some(b'\r'), Some(_)) => return Err(BARE_CR),
            (Some(b'\n'), _) => return Err(BARE_LF),
            (Some(_), _) => return Ok(Some(pos)),
        }
    }
}

/// Checks the field lines starting at `pos` up to the empty line; returns (field count, head
/// length), or `None` if the empty line has not arrived.
fn scan_fields(
    buf: &[u8],
    mut pos: usize,
    max_headers: usize,
) -> Result<Option<(usize, usize)>, HeadError> {
    let mut count = 0;
    loop {
        // A line starting with whitespace is obs-fold (or whitespace before the first field,
        // RFC 9112 §2.2); either would let a field hide inside another one.
        if matches!(buf.get(pos), Some(b' ' | b'\t')) {
            return Err(HeadError::BadRequest(
                "header line starts with whitespace (obs-fold)",
            ));
        }
        let Some(end) = find_line_end(buf, pos)? else {
            return Ok(None);
        };
        if end == pos {
            return Ok(Some((count, end + 2)));
        }
        check_field_line(buf.get(pos..end).unwrap_or_default())?;
        count += 1;
        if count > max_headers {
            return Err(HeadError::HeadersTooLarge);
        }
        pos = end + 2;
    }
}

const BARE_LF: HeadError = HeadError::BadRequest("LF without a preceding CR in the head");
const BARE_CR: HeadError = HeadError::BadRequest("CR not followed by LF in the head");

/// The index of the CR of the first CRLF at or after `from`; `None` if no line end has arrived.
/// A lone LF, or a CR followed by anything but LF, is an error wherever it appears.
fn find_line_end(buf: &[u8], from: usize) -> Result<Option<usize>, HeadError> {
    let rest = buf.get(from..).unwrap_or_default();
    let Some(i) = memchr2(b'\r', b'\n', rest) else {
        return Ok(None);
    };
    match (rest.get(i), rest.get(i + 1)) {
        (Some(b'\n'), _) => Err(BARE_LF),
        (_, None) => Ok(None),
        (_, Some(b'\n')) => Ok(Some(from + i)),
        (_, Some(_)) => Err(BARE_CR),
    }
}

/// Length of an unterminated line from `start` to the end of `buf`, not counting a final CR
/// whose LF may still be on its way.
fn partial_line_len(buf: &[u8], start: usize) -> usize {
    let len = buf.len().saturating_sub(start);
    if buf.last() == Some(&b'\r') {
        len.saturating_sub(1)
    } else {
        len
    }
}

/// Checks one field line (without its CRLF): `token ":" OWS value OWS`, value without NUL or
/// other control characters (RFC 9110 §5.5).
fn check_field_line(line: &[u8]) -> Result<(), HeadError> {
    let Some(colon) = memchr(b':', line) else {
        return Err(HeadError::BadRequest("header line without a colon"));
    };
    let (name, value) = line.split_at(colon);
    if name.is_empty() {
        return Err(HeadError::BadRequest("empty header field name"));
    }
    if matches!(name.last(), Some(b' ' | b'\t')) {
        return Err(HeadError::BadRequest(
            "whitespace between header field name and colon",
        ));
    }
    if !name.iter().all(|&b| is_tchar(b)) {
        return Err(HeadError::BadRequest(
            "invalid character in header field name",
        ));
    }
    // One pass over the value; which message, only once something is wrong.
    if any_byte(value, |b| is_ctl(b) && b != b'\t') {
        return Err(HeadError::BadRequest(if value.contains(&0) {
            "NUL in header field value"
        } else {
            "control character in header field value"
        }));
    }
    Ok(())
}

/// `tchar` of RFC 9110 §5.6.2: the characters allowed in tokens such as field names and methods.
pub(super) fn is_tchar(b: u8) -> bool {
    TCHAR[b as usize]
}

/// [`is_tchar`] as a table: every byte of every field name goes through it.
const TCHAR: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        b += 1;
    }
    table
};

/// Whether any byte of `bytes` satisfies `test`. Every byte is tested, without stopping at
/// the first: the loop then compiles to vector instructions, and a head is checked in a
/// fraction of the time a byte-by-byte search takes (a bad byte is rare).
pub(super) fn any_byte(bytes: &[u8], test: impl Fn(u8) -> bool) -> bool {
    bytes.iter().fold(false, |found, &b| found | test(b))
}

/// ASCII control characters, DEL included.
pub(super) fn is_ctl(b: u8) -> bool {
    b < 0x20 || b == 0x7f
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table holds exactly RFC 9110's tchar set.
    #[test]
    fn tchar_table_is_the_rfc_set() {
        let set: Vec<u8> = (0..=255u8).filter(|&b| is_tchar(b)).collect();
        let mut want: Vec<u8> = (b'0'..=b'9')
            .chain(b'A'..=b'Z')
            .chain(b'a'..=b'z')
            .collect();
        want.extend_from_slice(b"!#$%&'*+-.^_`|~");
        want.sort_unstable();
        assert_eq!(set, want);
    }

    fn scan(buf: &[u8]) -> Result<Option<HeadLines>, HeadError> {
        scan_request_head(buf, &Limits::default())
    }

    #[test]
    fn finds_lines_and_head_len() {
        let buf = b"\r\nGET / HTTP/1.1\r\nHost: a\r\nX: y\r\n\r\nNEXT";
        let lines = scan(buf).unwrap().unwrap();
        assert_eq!(lines.request_line_start, 2);
        assert_eq!(&buf[2..lines.request_line_end], b"GET / HTTP/1.1");
        assert_eq!(lines.field_count, 2);
        assert_eq!(&buf[lines.head_len..], b"NEXT");
    }

    #[test]
    fn incomplete_heads_ask_for_more() {
        for partial in [
            &b""[..],
            b"\r",
            b"\r\n",
            b"GET",
            b"GET / HTTP/1.1\r",
            b"GET / HTTP/1.1\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\n\r",
        ] {
            assert_eq!(scan(partial), Ok(None), "{partial:?}");
        }
    }

    #[test]
    fn bare_cr_and_lf_are_refused_everywhere() {
        for bad in [
            &b"\nGET / HTTP/1.1\r\n\r\n"[..],
            b"\rGET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\n\r\n",
            b"GET / HT\rTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\n\n",
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\r",
        ] {
            let err = scan(bad).unwrap_err();
            assert!(matches!(err, BARE_CR | BARE_LF), "{bad:?}: {err}");
        }
    }

    #[test]
    fn request_line_limit_applies_before_crlf() {
        let limits = Limits {
            max_request_line: 16,
            ..Limits::default()
        };
        assert_eq!(scan_request_head(&[b'A'; 16], &limits), Ok(None));
        assert_eq!(scan_request_head(b"AAAAAAAAAAAAAAAA\r", &limits), Ok(None));
        assert_eq!(
            scan_request_head(&[b'A'; 17], &limits),
            Err(HeadError::UriTooLong)
        );
        assert_eq!(
            scan_request_head(b"GET /aaaaaaaaaaaaa HTTP/1.1\r\n\r\n", &limits),
            Err(HeadError::UriTooLong)
        );
    }

    #[test]
    fn head_limit_applies_before_end() {
        let limits = Limits {
            max_head: 64,
            ..Limits::default()
        };
        let mut buf = b"GET / HTTP/1.1\r\nX: ".to_vec();
        buf.resize(64, b'a');
        assert_eq!(scan_request_head(&buf, &limits), Ok(None));
        buf.push(b'a');
        assert_eq!(
            scan_request_head(&buf, &limits),
            Err(HeadError::HeadersTooLarge)
        );
    }

    #[test]
    fn head_of_exactly_max_head_fits() {
        let head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        let limits = Limits {
            max_head: head.len(),
            ..Limits::default()
        };
        let mut buf = head.to_vec();
        buf.extend_from_slice(b"pipelined");
        assert!(scan_request_head(&buf, &limits).unwrap().is_some());
        let smaller = Limits {
            max_head: head.len() - 1,
            ..Limits::default()
        };
        assert_eq!(
            scan_request_head(head, &smaller),
            Err(HeadError::HeadersTooLarge)
        );
    }

    #[test]
    fn endless_empty_lines_hit_the_head_limit() {
        let limits = Limits {
            max_head: 64,
            ..Limits::default()
        };
        let buf = b"\r\n".repeat(40);
        assert_eq!(
            scan_request_head(&buf, &limits),
            Err(HeadError::HeadersTooLarge)
        );
    }

    #[test]
    fn header_count_limit_applies_before_end() {
        let limits = Limits {
            max_headers: 2,
            ..Limits::default()
        };
        let buf = b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\n";
        assert_eq!(scan_request_head(buf, &limits), Ok(None));
        let buf = b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n";
        assert_eq!(
            scan_request_head(buf, &limits),
            Err(HeadError::HeadersTooLarge)
        );
    }

    #[test]
    fn field_line_rules() {
        let cases: [(&[u8], &str); 8] = [
            (b" X: folded", "obs-fold"),
            (b"\tX: folded", "obs-fold"),
            (b"NoColon", "without a colon"),
            (b": v", "empty header field name"),
            (b"Host : a", "whitespace between"),
            (b"Ho\"st: a", "invalid character"),
            (b"X: a\0b", "NUL"),
            (b"X: a\x0bb", "control character"),
        ];
        for (line, why) in cases {
            let mut buf = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
            buf.extend_from_slice(line);
            buf.extend_from_slice(b"\r\n\r\n");
            match scan(&buf) {
                Err(HeadError::BadRequest(msg)) => assert!(msg.contains(why), "{line:?}: {msg}"),
                other => panic!("{line:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn obs_fold_is_refused_before_the_head_completes() {
        assert!(scan(b"GET / HTTP/1.1\r\nHost: a\r\n ").is_err());
    }

    #[test]
    fn obs_text_and_tab_allowed_in_values() {
        assert!(
            scan(b"GET / HTTP/1.1\r\nX: a\tb \xff\r\n\r\n")
                .unwrap()
                .is_some()
        );
    }
}
