//! Decoding of `Transfer-Encoding: chunked` bodies (RFC 9112 §7.1), for requests from clients
//! and responses from upstreams alike.
//!
//! The decoder is a byte-level state machine, so input may arrive split anywhere (a size line
//! across two reads, a CR in one and its LF in the next). It is strict wherever leniency could
//! make us and another parser disagree on where the body ends: CRLF exactly, hex sizes without
//! prefixes or padding, and bounded extensions and trailers, which are skipped, not kept.
//! After an error the stream cannot be resynchronised: the caller answers and closes.

use std::fmt;

/// Hex digits allowed in a chunk size: 16 × 4 bits fill a u64 exactly, so a size can never
/// overflow, and leading zeros past that are no legitimate sender's output.
const MAX_SIZE_DIGITS: u8 = 16;

/// Bytes of chunk extension (from the first whitespace or `;` to the CR) skipped per chunk.
/// Nothing we proxy uses extensions; the bound stops a peer from streaming an endless size line
/// that makes no body progress and so never hits the body limit. 4 KiB is far above any real
/// extension.
const MAX_CHUNK_EXT: usize = 4 * 1024;

/// Bytes of trailer section (every byte after the last-chunk line, final CRLF included).
/// Trailers are discarded; 16 KiB, a quarter of the request head limit, is ample for the few
/// checksum or status fields senders put there, and bounds how long a peer can keep a finished
/// body from completing.
const MAX_TRAILERS: usize = 16 * 1024;

/// Why a chunked body was refused; `Display` names the byte and the place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkedError {
    /// A chunk size did not start with a hex digit, or a digit was followed by something other
    /// than whitespace, `;` or CR.
    BadSize(u8),
    /// A chunk size had more than 16 hex digits.
    SizeTooLong,
    /// A byte not allowed in a chunk extension (a control character, or whitespace after the
    /// size that does not lead to `;`).
    BadExtension(u8),
    /// A chunk extension longer than 4 KiB.
    ExtensionTooLong,
    /// A line end other than CRLF (bare LF, or CR followed by another byte) after `after`.
    BadLineEnd { after: &'static str, got: u8 },
    /// A trailer section longer than 16 KiB.
    TrailersTooLarge,
    /// The decoded body would exceed the decoder's `max_body`; answer 413.
    BodyTooLarge { limit: u64 },
}

impl fmt::Display for ChunkedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChunkedError::BadSize(b) => write!(f, "chunk size: unexpected byte 0x{b:02x}"),
            ChunkedError::SizeTooLong => {
                write!(f, "chunk size has more than {MAX_SIZE_DIGITS} hex digits")
            }
            ChunkedError::BadExtension(b) => {
                write!(f, "chunk extension: unexpected byte 0x{b:02x}")
            }
            ChunkedError::ExtensionTooLong => {
                write!(f, "chunk extension longer than {MAX_CHUNK_EXT} bytes")
            }
            ChunkedError::BadLineEnd { after, got } => {
                write!(f, "expected CRLF after {after}, got byte 0x{got:02x}")
            }
            ChunkedError::TrailersTooLarge => {
                write!(
                    f,
                    "chunked trailer section longer than {MAX_TRAILERS} bytes"
                )
            }
            ChunkedError::BodyTooLarge { limit } => {
                write!(f, "chunked body larger than the {limit}-byte limit")
            }
        }
    }
}

impl std::error::Error for ChunkedError {}

/// Where in the chunked grammar the next byte belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading hex digits of a chunk size.
    Size { size: u64, digits: u8 },
    /// Whitespace after the size; only more whitespace or `;` may follow (BWS before chunk-ext).
    ExtSpace { size: u64, ext_len: usize },
    /// Inside the chunk extensions, up to the CR.
    Ext { size: u64, ext_len: usize },
    /// Saw the CR ending the size line.
    SizeLf { size: u64 },
    /// Copying chunk data.
    Data { remaining: u64 },
    /// Expecting the CR after chunk data.
    DataCr,
    /// Expecting the LF after chunk data.
    DataLf,
    /// At the start of a trailer line, or of the final empty line.
    TrailerStart,
    /// Inside a trailer field line.
    Trailer,
    /// Saw the CR ending a trailer field line.
    TrailerLf,
    /// Saw the CR of the final empty line.
    EndLf,
    /// The body is complete; further input belongs to the next message.
    Done,
}

/// Incremental decoder of one chunked body; feed it with [`ChunkedDecoder::decode`] until
/// [`ChunkedDecoder::is_done`].
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    /// Bound on the decoded size; `u64::MAX` for responses.
    max_body: u64,
    /// Decoded bytes promised by the size lines so far (never above `max_body`).
    decoded: u64,
    /// Bytes of trailer section seen so far.
    trailer_len: usize,
}

impl ChunkedDecoder {
    /// A decoder for a body whose decoded size may not exceed `max_body` bytes.
    pub fn new(max_body: u64) -> Self {
        ChunkedDecoder {
            state: State::Size { size: 0, digits: 0 },
            max_body,
            decoded: 0,
            trailer_len: 0,
        }
    }

    /// Consumes as much of `input` as it can, appending decoded data to `out`; returns how many
    /// bytes of `input` were consumed. It stops early only when the body is complete, so bytes
    /// after the last chunk's trailer section (a pipelined message) are left unconsumed.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, ChunkedError> {
        let mut pos = 0;
        while let Some(&byte) = input.get(pos) {
            match self.state {
                State::Done => break,
                State::Data { remaining } => {
                    let rest = input.get(pos..).unwrap_or_default();
                    pos += self.take_data(remaining, rest, out);
                }
                _ => {
                    self.step(byte)?;
                    pos += 1;
                }
            }
        }
        Ok(pos)
    }

    /// Whether the last-chunk and the trailer section's final CRLF have been consumed.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decoded body bytes announced so far (for logs and accounting).
    pub fn decoded_len(&self) -> u64 {
        self.decoded
    }

    /// Copies up to `remaining` bytes of chunk data; returns how many it took.
    fn take_data(&mut self, remaining: u64, input: &[u8], out: &mut Vec<u8>) -> usize {
        let n = usize::try_from(remaining).map_or(input.len(), |r| r.min(input.len()));
        out.extend_from_slice(input.get(..n).unwrap_or(input));
        // n <= remaining, so this cannot underflow; usize -> u64 is lossless on every target.
        let left = remaining - n as u64;
        self.state = if left == 0 {
            State::DataCr
        } else {
            State::Data { remaining: left }
        };
        n
    }

    /// Advances the state machine by one byte outside chunk data.
    fn step(&mut self, b: u8) -> Result<(), ChunkedError> {
        if self.in_trailers() {
            self.trailer_len += 1;
            if self.trailer_len > MAX_TRAILERS {
                return Err(ChunkedError::TrailersTooLarge);
            }
        }
        self.state = match self.state {
            State::Size { size, digits } => size_byte(size, digits, b)?,
            State::ExtSpace { size, ext_len } => ext_space_byte(size, ext_len, b)?,
            State::Ext { size, ext_len } => ext_byte(size, ext_len, b)?,
            State::SizeLf { size } => {
                expect_lf(b, "chunk size line")?;
                self.start_chunk(size)?
            }
            State::DataCr if b == b'\r' => State::DataLf,
            State::DataCr => return Err(bad_line_end("chunk data", b)),
            State::DataLf => {
                expect_lf(b, "chunk data")?;
                State::Size { size: 0, digits: 0 }
            }
            State::TrailerStart | State::Trailer => trailer_byte(self.state, b)?,
            State::TrailerLf => {
                expect_lf(b, "trailer field")?;
                State::TrailerStart
            }
            State::EndLf => {
                expect_lf(b, "trailer section")?;
                State::Done
            }
            // decode() never steps in these states; staying put keeps this total.
            State::Data { .. } | State::Done => self.state,
        };
        Ok(())
    }

    fn in_trailers(&self) -> bool {
        matches!(
            self.state,
            State::TrailerStart | State::Trailer | State::TrailerLf | State::EndLf
        )
    }

    /// After a complete size line: the last chunk leads to trailers, any other chunk is charged
    /// against `max_body` before a byte of it is read, so an oversized body fails at once.
    fn start_chunk(&mut self, size: u64) -> Result<State, ChunkedError> {
        if size == 0 {
            return Ok(State::TrailerStart);
        }
        // decoded <= max_body always holds, so the subtraction cannot underflow.
        if size > self.max_body - self.decoded {
            return Err(ChunkedError::BodyTooLarge {
                limit: self.max_body,
            });
        }
        self.decoded += size;
        Ok(State::Data { remaining: size })
    }
}

fn size_byte(size: u64, digits: u8, b: u8) -> Result<State, ChunkedError> {
    if let Some(d) = hex_value(b) {
        if digits == MAX_SIZE_DIGITS {
            return Err(ChunkedError::SizeTooLong);
        }
        // At most 15 digits (60 bits) are in `size` here, so the shift loses nothing.
        return Ok(State::Size {
            size: size << 4 | d,
            digits: digits + 1,
        });
    }
    match b {
        _ if digits == 0 => Err(ChunkedError::BadSize(b)),
        b'\r' => Ok(State::SizeLf { size }),
        b'\n' => Err(bad_line_end("chunk size line", b)),
        b';' => Ok(State::Ext { size, ext_len: 1 }),
        b' ' | b'\t' => Ok(State::ExtSpace { size, ext_len: 1 }),
        _ => Err(ChunkedError::BadSize(b)),
    }
}

fn ext_space_byte(size: u64, ext_len: usize, b: u8) -> Result<State, ChunkedError> {
    let ext_len = grow_ext(ext_len)?;
    match b {
        b' ' | b'\t' => Ok(State::ExtSpace { size, ext_len }),
        b';' => Ok(State::Ext { size, ext_len }),
        b'\n' => Err(bad_line_end("chunk size line", b)),
        _ => Err(ChunkedError::BadExtension(b)),
    }
}

/// Extension content is skipped, but control characters are refused: they have no place in
/// `token` or `quoted-string`, and a lone LF here would end the line for a lenient parser.
fn ext_byte(size: u64, ext_len: usize, b: u8) -> Result<State, ChunkedError> {
    match b {
        b'\r' => Ok(State::SizeLf { size }),
        b'\n' => Err(bad_line_end("chunk size line", b)),
        b'\t' => Ok(State::Ext {
            size,
            ext_len: grow_ext(ext_len)?,
        }),
        _ if b < 0x20 || b == 0x7f => Err(ChunkedError::BadExtension(b)),
        _ => Ok(State::Ext {
            size,
            ext_len: grow_ext(ext_len)?,
        }),
    }
}

fn grow_ext(ext_len: usize) -> Result<usize, ChunkedError> {
    if ext_len >= MAX_CHUNK_EXT {
        return Err(ChunkedError::ExtensionTooLong);
    }
    Ok(ext_len + 1)
}

/// Trailer lines are skipped; only their line ends matter, since they decide where the body
/// ends.
fn trailer_byte(state: State, b: u8) -> Result<State, ChunkedError> {
    match (state, b) {
        (State::TrailerStart, b'\r') => Ok(State::EndLf),
        (_, b'\r') => Ok(State::TrailerLf),
        (_, b'\n') => Err(bad_line_end("trailer field", b)),
        _ => Ok(State::Trailer),
    }
}

fn expect_lf(b: u8, after: &'static str) -> Result<(), ChunkedError> {
    if b == b'\n' {
        Ok(())
    } else {
        Err(bad_line_end(after, b))
    }
}

fn bad_line_end(after: &'static str, got: u8) -> ChunkedError {
    ChunkedError::BadLineEnd { after, got }
}

fn hex_value(b: u8) -> Option<u64> {
    char::from(b).to_digit(16).map(u64::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` in one call with no body limit.
    fn decode_all(input: &[u8]) -> Result<(Vec<u8>, usize, bool), ChunkedError> {
        decode_with(ChunkedDecoder::new(u64::MAX), input)
    }

    fn decode_with(
        mut d: ChunkedDecoder,
        input: &[u8],
    ) -> Result<(Vec<u8>, usize, bool), ChunkedError> {
        let mut out = Vec::new();
        let n = d.decode(input, &mut out)?;
        Ok((out, n, d.is_done()))
    }

    /// Feeds `input` in pieces whose lengths come from `split`, checking that every byte is
    /// consumed until the body is done.
    fn decode_split(
        input: &[u8],
        mut split: impl FnMut() -> usize,
    ) -> Result<(Vec<u8>, usize, bool), ChunkedError> {
        let mut d = ChunkedDecoder::new(u64::MAX);
        let (mut out, mut pos) = (Vec::new(), 0);
        while pos < input.len() && !d.is_done() {
            let end = (pos + split()).min(input.len());
            let n = d.decode(&input[pos..end], &mut out)?;
            assert!(n == end - pos || d.is_done(), "stopped early at {pos}");
            pos += n;
        }
        Ok((out, pos, d.is_done()))
    }

    /// A valid body exercising every part of the grammar, followed by pipelined bytes.
    const FULL: &[u8] = b"5\r\nhello\r\n\
        1A;name=value;flag\r\nabcdefghijklmnopqrstuvwxyz\r\n\
        3 \t;q=\"a; b\"\r\nxyz\r\n\
        0000000000000002\r\n\r\n\r\n\
        0;last\r\nX-Checksum: abc\r\nX-Other:\tz\r\n\r\n\
        NEXT";
    const FULL_DECODED: &[u8] = b"helloabcdefghijklmnopqrstuvwxyzxyz\r\n";
    const FULL_BODY_LEN: usize = FULL.len() - 4;

    #[test]
    fn decodes_simple_body() {
        let (out, n, done) = decode_all(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n").unwrap();
        assert_eq!((&out[..], n, done), (&b"hello world"[..], 26, true));
    }

    #[test]
    fn decodes_extensions_trailers_and_stops_before_next_message() {
        let (out, n, done) = decode_all(FULL).unwrap();
        assert_eq!(out, FULL_DECODED);
        assert_eq!(n, FULL_BODY_LEN);
        assert!(done);
        assert_eq!(&FULL[n..], b"NEXT");
    }

    #[test]
    fn decoded_len_counts_data() {
        let mut d = ChunkedDecoder::new(u64::MAX);
        d.decode(FULL, &mut Vec::new()).unwrap();
        assert_eq!(d.decoded_len(), FULL_DECODED.len() as u64);
    }

    #[test]
    fn uppercase_hex_and_empty_body() {
        let mut input = b"A\r\n".to_vec();
        input.extend_from_slice(&[b'x'; 10]);
        input.extend_from_slice(b"\r\n0\r\n\r\n");
        assert_eq!(decode_all(&input).unwrap().0.len(), 10);
        assert_eq!(decode_all(b"0\r\n\r\n").unwrap(), (vec![], 5, true));
    }

    #[test]
    fn every_split_point_gives_the_same_result() {
        let whole = decode_all(FULL).unwrap();
        assert_eq!(decode_split(FULL, || 1).unwrap(), whole, "byte at a time");
        for first in 0..=FULL.len() {
            let mut sizes = [first, FULL.len()].into_iter();
            let got = decode_split(FULL, || sizes.next().unwrap_or(1)).unwrap();
            assert_eq!(got, whole, "split at {first}");
        }
    }

    #[test]
    fn random_splits_give_the_same_result() {
        let whole = decode_all(FULL).unwrap();
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..2000 {
            let got = decode_split(FULL, || {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (seed % 12) as usize
            })
            .unwrap();
            assert_eq!(got, whole);
        }
    }

    #[test]
    fn partial_input_is_consumed_and_not_done() {
        let (out, n, done) = decode_all(b"5\r\nhel").unwrap();
        assert_eq!((&out[..], n, done), (&b"hel"[..], 6, false));
    }

    #[test]
    fn done_decoder_consumes_nothing() {
        let mut d = ChunkedDecoder::new(u64::MAX);
        let mut out = Vec::new();
        d.decode(b"0\r\n\r\n", &mut out).unwrap();
        assert_eq!(d.decode(b"5\r\nhello", &mut out), Ok(0));
        assert!(out.is_empty());
    }

    fn err(input: &[u8]) -> ChunkedError {
        match decode_all(input) {
            Err(e) => e,
            Ok(got) => panic!("{:?} decoded as {got:?}", String::from_utf8_lossy(input)),
        }
    }

    #[test]
    fn size_must_be_bare_hex() {
        for (input, byte) in [
            (&b"\r\n"[..], b'\r'),
            (b" 5\r\n", b' '),
            (b"+5\r\n", b'+'),
            (b"-5\r\n", b'-'),
            (b"0x5\r\n", b'x'),
            (b"5g\r\n", b'g'),
            (b";ext\r\n", b';'),
        ] {
            assert_eq!(err(input), ChunkedError::BadSize(byte), "{input:?}");
        }
    }

    #[test]
    fn size_digits_are_capped() {
        assert_eq!(err(b"00000000000000005\r\n"), ChunkedError::SizeTooLong);
        assert_eq!(err(b"10000000000000000\r\n"), ChunkedError::SizeTooLong);
        let (_, n, done) = decode_all(b"ffffffffffffffff\r\nabc").unwrap();
        assert_eq!((n, done), (21, false));
    }

    #[test]
    fn line_ends_must_be_crlf() {
        let cases: [(&[u8], &str, u8); 8] = [
            (b"5\nhello\r\n", "chunk size line", b'\n'),
            (b"5\rhello\r\n", "chunk size line", b'h'),
            (b"5;a\nhello\r\n", "chunk size line", b'\n'),
            (b"5 \nhello\r\n", "chunk size line", b'\n'),
            (b"5\r\nhelloX", "chunk data", b'X'),
            (b"5\r\nhello\n0\r\n\r\n", "chunk data", b'\n'),
            (b"5\r\nhello\rX", "chunk data", b'X'),
            (b"0\r\n\n", "trailer field", b'\n'),
        ];
        for (input, after, got) in cases {
            assert_eq!(
                err(input),
                ChunkedError::BadLineEnd { after, got },
                "{input:?}"
            );
        }
        assert_eq!(
            err(b"0\r\nX: 1\n\r\n"),
            ChunkedError::BadLineEnd {
                after: "trailer field",
                got: b'\n'
            }
        );
        assert_eq!(
            err(b"0\r\nX: 1\rZ"),
            ChunkedError::BadLineEnd {
                after: "trailer field",
                got: b'Z'
            }
        );
        assert_eq!(
            err(b"0\r\n\rZ"),
            ChunkedError::BadLineEnd {
                after: "trailer section",
                got: b'Z'
            }
        );
    }

    #[test]
    fn extension_rules() {
        assert_eq!(err(b"5 \r\nhello"), ChunkedError::BadExtension(b'\r'));
        assert_eq!(err(b"5 x\r\nhello"), ChunkedError::BadExtension(b'x'));
        assert_eq!(err(b"5;a\x00\r\n"), ChunkedError::BadExtension(0));
        assert_eq!(err(b"5;a\x7f\r\n"), ChunkedError::BadExtension(0x7f));
        let mut long = b"1;".to_vec();
        long.resize(1 + MAX_CHUNK_EXT, b'a');
        long.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
        assert!(
            decode_all(&long).unwrap().2,
            "extension of exactly the limit"
        );
        let mut longer = b"1;".to_vec();
        longer.resize(2 + MAX_CHUNK_EXT, b'a');
        longer.extend_from_slice(b"\r\n");
        assert_eq!(err(&longer), ChunkedError::ExtensionTooLong);
        let mut spaces = b"1".to_vec();
        spaces.resize(2 + MAX_CHUNK_EXT, b' ');
        assert_eq!(err(&spaces), ChunkedError::ExtensionTooLong);
    }

    #[test]
    fn trailer_section_is_bounded() {
        // The trailer section is everything after "0\r\n": here (len - 3) + the final 4 bytes.
        let mut fits = b"0\r\nX: ".to_vec();
        fits.resize(MAX_TRAILERS - 1, b'a');
        fits.extend_from_slice(b"\r\n\r\n");
        assert!(decode_all(&fits).unwrap().2);
        let mut too_big = b"0\r\nX: ".to_vec();
        too_big.resize(MAX_TRAILERS, b'a');
        too_big.extend_from_slice(b"\r\n\r\n");
        assert_eq!(err(&too_big), ChunkedError::TrailersTooLarge);
    }

    #[test]
    fn body_limit_is_a_distinct_error() {
        let input = b"5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n";
        assert!(decode_with(ChunkedDecoder::new(10), input).unwrap().2);
        assert_eq!(
            decode_with(ChunkedDecoder::new(9), input),
            Err(ChunkedError::BodyTooLarge { limit: 9 })
        );
        // Refused on the size line, before any of the oversized chunk is read.
        assert_eq!(
            decode_with(ChunkedDecoder::new(4), b"5\r\n"),
            Err(ChunkedError::BodyTooLarge { limit: 4 })
        );
    }

    #[test]
    fn errors_say_what_was_wrong() {
        assert_eq!(
            ChunkedError::BadLineEnd {
                after: "chunk data",
                got: b'X'
            }
            .to_string(),
            "expected CRLF after chunk data, got byte 0x58"
        );
        assert_eq!(
            ChunkedError::BodyTooLarge { limit: 9 }.to_string(),
            "chunked body larger than the 9-byte limit"
        );
        assert_eq!(
            ChunkedError::BadSize(b'x').to_string(),
            "chunk size: unexpected byte 0x78"
        );
    }
}
