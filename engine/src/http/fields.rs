//! What individual header fields mean for framing and connection handling: Content-Length,
//! Transfer-Encoding, Connection, and the hop-by-hop set. Shared by the request and response
//! parsers so both read these fields the same way.

use super::Headers;

/// Header names a proxy must not forward (RFC 9110 §7.6.1, plus the de-facto `keep-alive` and
/// `proxy-connection`). Content-Length is not here: callers drop or recompute it themselves
/// depending on whether they re-frame the body.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
];

/// Whether `name` is a hop-by-hop header (ASCII case-insensitive). Names listed in the message's
/// Connection header are hop-by-hop too; see [`connection_tokens`].
pub fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// The comma-separated tokens of a Connection header value, trimmed, empty elements skipped
/// (RFC 9110 §5.6.1 lets senders write `a, , b`).
pub fn connection_tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    list_elements(value).filter(|t| !t.is_empty())
}

/// The elements of a comma list, each trimmed of optional whitespace; empty ones are kept so
/// callers that must reject them can.
fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(trim_ows)
}

/// `value` without leading and trailing SP / HTAB.
pub(super) fn trim_ows(value: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value.iter().position(|b| !is_ows(b)).unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    value.get(start..end).unwrap_or_default()
}

/// Whether any Connection header lists `token` (ASCII case-insensitive).
pub(super) fn connection_has(headers: &Headers, token: &str) -> bool {
    headers
        .values_of("connection")
        .flat_map(connection_tokens)
        .any(|t| t.eq_ignore_ascii_case(token.as_bytes()))
}

/// Persistence by the version's default (RFC 9112 §9.3): HTTP/1.1 stays open unless
/// `Connection: close`; HTTP/1.0 closes unless `Connection: keep-alive`.
pub(super) fn wants_keep_alive(headers: &Headers, minor_version: u8) -> bool {
    if connection_has(headers, "close") {
        return false;
    }
    minor_version >= 1 || connection_has(headers, "keep-alive")
}

/// The message's Content-Length, if any: every Content-Length header and every element of a
/// comma list must be `1*DIGIT` fitting in u64, and all must agree (RFC 9112 §6.3 item 5).
pub(super) fn content_length(headers: &Headers) -> Result<Option<u64>, &'static str> {
    let mut found = None;
    for element in headers.values_of("content-length").flat_map(list_elements) {
        let n = parse_digits(element)?;
        match found {
            Some(previous) if previous != n => return Err("Content-Length values differ"),
            _ => found = Some(n),
        }
    }
    Ok(found)
}

/// `1*DIGIT` as u64: no sign, no inner spaces, no hex, no overflow.
fn parse_digits(digits: &[u8]) -> Result<u64, &'static str> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err("Content-Length is not a decimal number");
    }
    digits.iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(d - b'0')))
            .ok_or("Content-Length overflows 64 bits")
    })
}

/// Whether the message carries any Transfer-Encoding header.
pub(super) fn has_transfer_encoding(headers: &Headers) -> bool {
    headers.values_of("transfer-encoding").next().is_some()
}

/// Checks a request's Transfer-Encoding: we only decode `chunked`, and anything else (another
/// coding, a list, a second header) could be framed differently by the upstream, so it is refused
/// rather than guessed at (RFC 9112 §6.1 lets a server answer 501; 400 also closes the door).
pub(super) fn request_transfer_encoding_is_chunked(headers: &Headers) -> Result<(), &'static str> {
    let mut all = headers.values_of("transfer-encoding");
    let Some(value) = all.next() else {
        return Err("no Transfer-Encoding");
    };
    if all.next().is_some() {
        return Err("more than one Transfer-Encoding header");
    }
    if trim_ows(value).eq_ignore_ascii_case(b"chunked") {
        Ok(())
    } else {
        Err("Transfer-Encoding other than exactly 'chunked'")
    }
}

/// Whether the final coding across all Transfer-Encoding headers is `chunked`, which is what
/// decides a response's framing (RFC 9112 §6.3 item 4).
pub(super) fn chunked_is_last(headers: &Headers) -> bool {
    headers
        .values_of("transfer-encoding")
        .flat_map(list_elements)
        .filter(|c| !c.is_empty())
        .last()
        .is_some_and(|c| c.eq_ignore_ascii_case(b"chunked"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h<'a>(name: &'a str, value: &'a str) -> (&'a str, &'a [u8]) {
        (name, value.as_bytes())
    }

    fn hl<'a>(pairs: &[(&'a str, &'a [u8])]) -> Headers {
        Headers::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn hop_by_hop_is_case_insensitive_and_excludes_content_length() {
        for name in [
            "Connection",
            "KEEP-ALIVE",
            "te",
            "Transfer-Encoding",
            "Upgrade",
        ] {
            assert!(is_hop_by_hop(name), "{name}");
        }
        for name in ["content-length", "host", "authorization", "x-te"] {
            assert!(!is_hop_by_hop(name), "{name}");
        }
    }

    #[test]
    fn connection_tokens_trim_and_skip_empty() {
        let t: Vec<&[u8]> = connection_tokens(b" close ,, X-Foo\t,").collect();
        assert_eq!(t, [&b"close"[..], b"X-Foo"]);
        assert_eq!(connection_tokens(b"").count(), 0);
    }

    #[test]
    fn trim_ows_edges() {
        assert_eq!(trim_ows(b""), b"");
        assert_eq!(trim_ows(b" \t "), b"");
        assert_eq!(trim_ows(b"\ta b "), b"a b");
    }

    #[test]
    fn content_length_accepts_identical_repeats() {
        let hs = hl(&[h("Content-Length", "5, 5"), h("content-length", "5")]);
        assert_eq!(content_length(&hs), Ok(Some(5)));
        assert_eq!(content_length(&hl(&[h("X", "1")])), Ok(None));
        assert_eq!(
            content_length(&hl(&[h("content-length", "007")])),
            Ok(Some(7))
        );
    }

    #[test]
    fn content_length_rejects_malformed() {
        for bad in [
            "",
            "+5",
            "-5",
            "5 5",
            "0x5",
            "5a",
            "5,",
            "5,6",
            "18446744073709551616",
        ] {
            assert!(
                content_length(&hl(&[h("Content-Length", bad)])).is_err(),
                "{bad:?}"
            );
        }
        let max = u64::MAX.to_string();
        assert_eq!(
            content_length(&hl(&[h("Content-Length", &max)])),
            Ok(Some(u64::MAX))
        );
    }

    #[test]
    fn request_te_only_lone_chunked() {
        assert!(
            request_transfer_encoding_is_chunked(&hl(&[h("Transfer-Encoding", "ChUnKeD")])).is_ok()
        );
        for bad in [
            "chunked, identity",
            "gzip, chunked",
            "xchunked",
            "chunk",
            "",
            "chunked\x0b",
        ] {
            let hs = hl(&[h("Transfer-Encoding", bad)]);
            assert!(
                request_transfer_encoding_is_chunked(&hs).is_err(),
                "{bad:?}"
            );
        }
        let two = hl(&[
            h("Transfer-Encoding", "chunked"),
            h("transfer-encoding", "chunked"),
        ]);
        assert!(request_transfer_encoding_is_chunked(&two).is_err());
    }

    #[test]
    fn response_chunked_must_be_last() {
        assert!(chunked_is_last(&hl(&[h(
            "Transfer-Encoding",
            "gzip, Chunked"
        )])));
        assert!(chunked_is_last(&hl(&[
            h("TE", "x"),
            h("Transfer-Encoding", "gzip"),
            h("transfer-encoding", "chunked")
        ])));
        assert!(!chunked_is_last(&hl(&[h(
            "Transfer-Encoding",
            "chunked, gzip"
        )])));
        assert!(!chunked_is_last(&hl(&[h("Transfer-Encoding", "")])));
        assert!(!chunked_is_last(&hl(&[])));
    }

    #[test]
    fn keep_alive_by_version() {
        assert!(wants_keep_alive(&hl(&[]), 1));
        assert!(!wants_keep_alive(&hl(&[h("Connection", "foo, Close")]), 1));
        assert!(!wants_keep_alive(&hl(&[]), 0));
        assert!(wants_keep_alive(&hl(&[h("connection", "Keep-Alive")]), 0));
        assert!(!wants_keep_alive(
            &hl(&[h("connection", "keep-alive, close")]),
            0
        ));
    }
}
