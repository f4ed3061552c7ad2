//! The request-head parser and the chunked decoder (`engine::http`) on arbitrary bytes.
//!
//! Input: one selector byte, then the bytes a client sent. The head is parsed with the default
//! limits and with tight ones; a parsed head must be self-consistent (its length within the
//! input, one framing only) and the same however often and from however long a buffer it is
//! parsed. When the head announces a chunked body, the bytes after it are decoded in one call,
//! in two calls split where the selector says, and one byte per call: the three must agree, as
//! a shard reading from a socket sees the body cut anywhere.

#![no_main]

use engine::http::{
    BodyFraming, ChunkedDecoder, ChunkedError, HeadError, Limits, RequestHead, parse_request_head,
};
use libfuzzer_sys::fuzz_target;

/// Limits small enough that fuzz inputs (a few hundred bytes) cross each of them.
const TIGHT: Limits = Limits {
    max_request_line: 40,
    max_head: 160,
    max_headers: 3,
};

/// A body limit that small chunked bodies exceed, so `BodyTooLarge` is reached too.
const SMALL_BODY: u64 = 16;

type Parsed = Result<Option<RequestHead>, HeadError>;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, buf)) = data.split_first() else {
        return;
    };
    let shown = buf.escape_ascii();
    let default = check_head(buf, &Limits::default());
    let tight = check_head(buf, &TIGHT);
    // Tighter limits may only turn a result into a limit error, never into another answer.
    let limit_error = matches!(
        tight,
        Err(HeadError::UriTooLong | HeadError::HeadersTooLarge)
    );
    assert!(
        tight == default || limit_error,
        "{shown}: default limits give {default:?}, tight ones {tight:?}"
    );
    if let Ok(Some(head)) = &default
        && head.framing == BodyFraming::Chunked
    {
        let body = buf.get(head.head_len..).unwrap_or_default();
        check_chunked(body, selector, u64::MAX);
        check_chunked(body, selector, SMALL_BODY);
    }
});

/// Parses `buf` and checks what a parsed head promises; returns the result.
fn check_head(buf: &[u8], limits: &Limits) -> Parsed {
    let shown = buf.escape_ascii();
    let parsed = parse_request_head(buf, limits);
    assert_eq!(parse_request_head(buf, limits), parsed, "{shown}: reparse");
    let Ok(Some(head)) = &parsed else {
        return parsed;
    };
    assert!(head.head_len <= buf.len(), "{shown}: head_len past the end");
    check_framing(head);
    // The head does not depend on what follows it (body or pipelined request)...
    let own = buf.get(..head.head_len).unwrap_or_default();
    assert_eq!(
        parse_request_head(own, limits),
        parsed,
        "{shown}: head alone"
    );
    // ...and any shorter prefix of it asks for more bytes rather than failing.
    for end in [0, head.head_len / 2, head.head_len.saturating_sub(1)] {
        let prefix = buf.get(..end).unwrap_or_default();
        assert_eq!(
            parse_request_head(prefix, limits),
            Ok(None),
            "{shown}: prefix of {end} bytes"
        );
    }
    parsed
}

/// One framing only: a chunked request has no Content-Length and exactly one Transfer-Encoding,
/// a length-framed one no Transfer-Encoding, and an unframed one neither.
fn check_framing(head: &RequestHead) {
    let count = |name: &str| {
        head.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .count()
    };
    let (lengths, encodings) = (count("content-length"), count("transfer-encoding"));
    let consistent = match head.framing {
        BodyFraming::None => lengths == 0 && encodings == 0,
        BodyFraming::Length(_) => lengths > 0 && encodings == 0,
        BodyFraming::Chunked => lengths == 0 && encodings == 1 && head.minor_version == 1,
    };
    assert!(
        consistent,
        "{head:?}: framing {:?} with {lengths} Content-Length and {encodings} Transfer-Encoding",
        head.framing
    );
}

/// What decoding a whole input produced: decoded bytes, input consumed, done, decoded_len.
type Decoded = Result<(Vec<u8>, usize, bool, u64), ChunkedError>;

/// Decodes `body` whole, split in two where `selector` says, and one byte at a time.
fn check_chunked(body: &[u8], selector: u8, max_body: u64) {
    let shown = body.escape_ascii();
    let whole = decode_pieces(body, max_body, &[body.len()]);
    let split_at = usize::from(selector) * body.len() / usize::from(u8::MAX);
    let split = decode_pieces(body, max_body, &[split_at, body.len() - split_at]);
    let ones = vec![1; body.len()];
    let bytewise = decode_pieces(body, max_body, &ones);
    assert_eq!(
        split, whole,
        "{shown} split at {split_at}, limit {max_body}"
    );
    assert_eq!(bytewise, whole, "{shown} byte by byte, limit {max_body}");
    if let Ok((out, consumed, done, decoded_len)) = &whole {
        assert!(*consumed <= body.len());
        assert!(*done || *consumed == body.len(), "{shown}: stopped early");
        assert!(out.len() <= *consumed, "{shown}: decoded more than read");
        assert!(*decoded_len <= max_body, "{shown}: over the limit");
        assert!(
            out.len() as u64 <= *decoded_len,
            "{shown}: decoded_len short"
        );
        if *done {
            assert_eq!(out.len() as u64, *decoded_len, "{shown}: done but short");
        }
    }
}

/// Feeds `body` to one decoder in pieces of the given lengths, stopping once it is done, and
/// checks that it consumes every byte of each piece until then.
fn decode_pieces(body: &[u8], max_body: u64, lengths: &[usize]) -> Decoded {
    let shown = body.escape_ascii();
    let mut decoder = ChunkedDecoder::new(max_body);
    let (mut out, mut pos) = (Vec::new(), 0);
    for &len in lengths {
        if decoder.is_done() {
            break;
        }
        let piece = body.get(pos..pos + len).unwrap_or_default();
        let taken = decoder.decode(piece, &mut out)?;
        assert!(
            taken == piece.len() || decoder.is_done(),
            "{shown}: piece at {pos} only partly consumed"
        );
        pos += taken;
    }
    Ok((out, pos, decoder.is_done(), decoder.decoded_len()))
}
