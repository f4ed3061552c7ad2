//! Undoing an upstream's `Content-Encoding` on a body already held in memory: the model list v1
//! rewrites (§2.8) and the error body of a failed attempt it parses for a message (§2.10).
//!
//! Not for streaming responses: those are relayed as they come, encoded or not. Every decoder
//! here is pure Rust (no C toolchain in the build) and every output is bounded by the caller's
//! `max_output`, so a small compressed body cannot expand into gigabytes (a decompression bomb).

use std::io::Read;

/// One content coding of RFC 9110 §8.4.1 that we can undo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    /// `gzip` or its old alias `x-gzip`; concatenated members are decoded as one body, like Go's
    /// reader (what v1 used).
    Gzip,
    /// `deflate`: zlib-wrapped per the RFC, raw deflate accepted as most clients do.
    Deflate,
    /// `br`.
    Brotli,
    /// `zstd`, with the 8 MiB window limit of RFC 9659.
    Zstd,
}

impl Encoding {
    /// The token as it appears in `Content-Encoding`.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Identity => "identity",
            Encoding::Gzip => "gzip",
            Encoding::Deflate => "deflate",
            Encoding::Brotli => "br",
            Encoding::Zstd => "zstd",
        }
    }

    fn parse_token(token: &str) -> Option<Self> {
        let known = [
            ("identity", Encoding::Identity),
            ("gzip", Encoding::Gzip),
            ("x-gzip", Encoding::Gzip),
            ("deflate", Encoding::Deflate),
            ("br", Encoding::Brotli),
            ("zstd", Encoding::Zstd),
        ];
        // Content-coding tokens are case-insensitive (RFC 9110 §8.4.1).
        known
            .into_iter()
            .find(|(name, _)| token.eq_ignore_ascii_case(name))
            .map(|(_, encoding)| encoding)
    }
}

/// Reads a `Content-Encoding` header value. Absent, empty or `identity` is [`Encoding::Identity`];
/// an unknown coding, or more than one non-identity coding stacked (`gzip, br`), is an error
/// naming the value: no upstream we proxy stacks codings, so we refuse rather than guess.
pub fn parse_content_encoding(value: Option<&[u8]>) -> Result<Encoding, String> {
    let Some(value) = value else {
        return Ok(Encoding::Identity);
    };
    let text = std::str::from_utf8(value).map_err(|_| {
        format!("Content-Encoding {value:?}: not ASCII; expected gzip, deflate, br or zstd")
    })?;
    let mut codings = text
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| Encoding::parse_token(t).ok_or(t))
        .filter(|c| *c != Ok(Encoding::Identity));
    let first = codings.next();
    if codings.next().is_some() {
        return Err(format!(
            "Content-Encoding '{text}': stacked codings are not supported; expected one of \
             gzip, deflate, br or zstd"
        ));
    }
    match first {
        None => Ok(Encoding::Identity),
        Some(Ok(encoding)) => Ok(encoding),
        Some(Err(token)) => Err(format!(
            "Content-Encoding '{text}': unknown coding '{token}'; expected gzip, deflate, br or zstd"
        )),
    }
}

/// Decodes `bytes` under `encoding`, producing at most `max_output` bytes: a body that would
/// decode to more is an error, found after at most `max_output + 1` bytes were produced. The
/// limit applies to [`Encoding::Identity`] too, so callers get one bound whatever the upstream
/// sent. An empty body decodes to an empty body under any coding (upstreams label empty error
/// bodies `gzip` too).
pub fn decode_body(bytes: &[u8], encoding: Encoding, max_output: usize) -> Result<Vec<u8>, String> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let decoded = match encoding {
        Encoding::Identity if bytes.len() > max_output => Err(Failure::TooLarge),
        Encoding::Identity => Ok(bytes.to_vec()),
        Encoding::Gzip => read_bounded(flate2::read::MultiGzDecoder::new(bytes), max_output),
        Encoding::Deflate if is_zlib_header(bytes) => {
            read_bounded(flate2::read::ZlibDecoder::new(bytes), max_output)
        }
        Encoding::Deflate => read_bounded(flate2::read::DeflateDecoder::new(bytes), max_output),
        Encoding::Brotli => read_bounded(
            brotli_decompressor::Decompressor::new(bytes, BROTLI_BUFFER),
            max_output,
        ),
        Encoding::Zstd => decode_zstd(bytes, max_output),
    };
    decoded.map_err(|failure| failure.describe(encoding, max_output))
}

/// Why a body did not decode.
enum Failure {
    /// It would decode to more than `max_output` bytes.
    TooLarge,
    /// It is not valid under its coding (the decoder's own words).
    Corrupt(String),
}

impl Failure {
    fn describe(self, encoding: Encoding, max_output: usize) -> String {
        match self {
            Failure::TooLarge => format!(
                "decoded {} body exceeds {max_output} bytes; refusing to expand it further \
                 (a decompression bomb, or a limit set too low)",
                encoding.name()
            ),
            Failure::Corrupt(why) => format!("{} body does not decode: {why}", encoding.name()),
        }
    }
}

/// Input buffer of the brotli reader; the input is already in memory, so this only sets how
/// much is copied per step.
const BROTLI_BUFFER: usize = 4096;

/// RFC 9659 §3: zstd content-coding decoders must support windows up to 8 MiB and encoders must
/// not exceed it. Larger windows are refused before the decoder reserves them (ruzstd would
/// reserve up to 128 MiB per frame otherwise).
const ZSTD_MAX_WINDOW: u64 = 8 * 1024 * 1024;

/// Whether `bytes` starts with a zlib header (RFC 1950): deflate method and a valid check.
fn is_zlib_header(bytes: &[u8]) -> bool {
    match bytes {
        [cmf, flg, ..] => {
            cmf & 0x0f == 8 && cmf >> 4 <= 7 && (u16::from(*cmf) << 8 | u16::from(*flg)) % 31 == 0
        }
        _ => false,
    }
}

/// Reads `reader` to its end, failing once it yields more than `max_output` bytes.
fn read_bounded(reader: impl Read, max_output: usize) -> Result<Vec<u8>, Failure> {
    let mut out = Vec::new();
    let limit = u64::try_from(max_output)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    reader
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|e| Failure::Corrupt(e.to_string()))?;
    if out.len() > max_output {
        return Err(Failure::TooLarge);
    }
    Ok(out)
}

/// zstd bodies may hold several frames (RFC 8878 §3.1) and skippable frames between them; each
/// frame gets a fresh decoder, all sharing one output bound.
fn decode_zstd(bytes: &[u8], max_output: usize) -> Result<Vec<u8>, Failure> {
    use ruzstd::decoding::StreamingDecoder;
    use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};

    let mut input = bytes;
    let mut out = Vec::new();
    while !input.is_empty() {
        match StreamingDecoder::new_with_max_window_size(&mut input, ZSTD_MAX_WINDOW) {
            Ok(frame) => out.extend(read_bounded(frame, max_output.saturating_sub(out.len()))?),
            Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame {
                length,
                ..
            })) => {
                input = usize::try_from(length)
                    .ok()
                    .and_then(|n| input.get(n..))
                    .ok_or_else(|| Failure::Corrupt("skippable frame runs past the end".into()))?;
            }
            Err(e) => return Err(Failure::Corrupt(e.to_string())),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const LIMIT: usize = 1 << 20;

    fn sample() -> Vec<u8> {
        let list = r#"{"object":"list","data":[{"id":"gpt-4o","object":"model"}]}"#;
        list.repeat(50).into_bytes()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn raw_deflate(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn brotli(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
            w.write_all(data).unwrap();
        }
        out
    }

    fn zstd(data: &[u8]) -> Vec<u8> {
        ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
    }

    fn all_codings(data: &[u8]) -> [(Encoding, Vec<u8>); 6] {
        [
            (Encoding::Identity, data.to_vec()),
            (Encoding::Gzip, gzip(data)),
            (Encoding::Deflate, zlib(data)),
            (Encoding::Deflate, raw_deflate(data)),
            (Encoding::Brotli, brotli(data)),
            (Encoding::Zstd, zstd(data)),
        ]
    }

    #[test]
    fn every_coding_round_trips() {
        let data = sample();
        for (encoding, encoded) in all_codings(&data) {
            assert_eq!(
                decode_body(&encoded, encoding, LIMIT),
                Ok(data.clone()),
                "{encoding:?}"
            );
        }
    }

    #[test]
    fn output_exactly_at_the_limit_is_accepted() {
        let data = sample();
        for (encoding, encoded) in all_codings(&data) {
            assert_eq!(
                decode_body(&encoded, encoding, data.len()),
                Ok(data.clone()),
                "{encoding:?}"
            );
            let err = decode_body(&encoded, encoding, data.len() - 1).unwrap_err();
            assert!(err.contains("exceeds"), "{encoding:?}: {err}");
        }
    }

    #[test]
    fn bombs_stop_at_the_limit() {
        // 16 MiB of zeros compresses to at most a few dozen KiB.
        let zeros = vec![0u8; 16 << 20];
        for (encoding, encoded) in all_codings(&zeros).into_iter().skip(1) {
            assert!(encoded.len() < 256 << 10, "{encoding:?} fixture is small");
            let err = decode_body(&encoded, encoding, LIMIT).unwrap_err();
            assert_eq!(
                err,
                format!(
                    "decoded {} body exceeds {LIMIT} bytes; refusing to expand it further \
                     (a decompression bomb, or a limit set too low)",
                    encoding.name()
                )
            );
        }
    }

    #[test]
    fn concatenated_gzip_members_are_one_body() {
        let mut two = gzip(b"hello ");
        two.extend(gzip(b"world"));
        assert_eq!(
            decode_body(&two, Encoding::Gzip, LIMIT),
            Ok(b"hello world".to_vec())
        );
    }

    #[test]
    fn zstd_frames_from_the_reference_encoder() {
        // `printf 'hello ' | zstd -c` (with checksum) then `printf 'world' | zstd -c --no-check`.
        let two_frames = [
            0x28, 0xb5, 0x2f, 0xfd, 0x04, 0x58, 0x31, 0x00, 0x00, 0x68, 0x65, 0x6c, 0x6c, 0x6f,
            0x20, 0xd2, 0x3b, 0xe1, 0xa9, 0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x58, 0x29, 0x00, 0x00,
            0x77, 0x6f, 0x72, 0x6c, 0x64,
        ];
        let want = b"hello world".to_vec();
        assert_eq!(
            decode_body(&two_frames, Encoding::Zstd, LIMIT),
            Ok(want.clone())
        );
        // A skippable frame (magic 0x184D2A50, 3 bytes of payload) between them is ignored.
        let mut skipping = two_frames[..19].to_vec();
        skipping.extend([0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 1, 2, 3]);
        skipping.extend(&two_frames[19..]);
        assert_eq!(decode_body(&skipping, Encoding::Zstd, LIMIT), Ok(want));
        assert!(decode_body(&skipping[..29], Encoding::Zstd, LIMIT).is_err());
    }

    #[test]
    fn zstd_windows_beyond_8_mib_are_refused() {
        // `printf 'big window' | zstd -c --long=27`: declares a 128 MiB window.
        let big_window = [
            0x28, 0xb5, 0x2f, 0xfd, 0x04, 0x88, 0x51, 0x00, 0x00, 0x62, 0x69, 0x67, 0x20, 0x77,
            0x69, 0x6e, 0x64, 0x6f, 0x77, 0xa1, 0x20, 0x01, 0x7f,
        ];
        let err = decode_body(&big_window, Encoding::Zstd, LIMIT).unwrap_err();
        assert!(err.starts_with("zstd body does not decode: "), "{err}");
    }

    #[test]
    fn corrupt_and_truncated_bodies_are_errors() {
        let data = sample();
        for (encoding, encoded) in all_codings(&data).into_iter().skip(1) {
            let truncated = &encoded[..encoded.len() / 2];
            let err = decode_body(truncated, encoding, LIMIT).unwrap_err();
            assert!(
                err.starts_with(&format!("{} body does not decode: ", encoding.name())),
                "{err}"
            );
        }
        assert!(decode_body(b"{\"plain\":1}", Encoding::Gzip, LIMIT).is_err());
    }

    #[test]
    fn empty_bodies_decode_to_nothing() {
        for encoding in [
            Encoding::Gzip,
            Encoding::Deflate,
            Encoding::Brotli,
            Encoding::Zstd,
        ] {
            assert_eq!(decode_body(b"", encoding, 0), Ok(Vec::new()));
        }
    }

    #[test]
    fn identity_is_bounded_too() {
        assert_eq!(
            decode_body(b"abc", Encoding::Identity, 3),
            Ok(b"abc".to_vec())
        );
        assert!(decode_body(b"abcd", Encoding::Identity, 3).is_err());
    }

    #[test]
    fn content_encoding_values() {
        let parse = |v: &str| parse_content_encoding(Some(v.as_bytes()));
        assert_eq!(parse_content_encoding(None), Ok(Encoding::Identity));
        for (value, want) in [
            ("", Encoding::Identity),
            ("identity", Encoding::Identity),
            ("gzip", Encoding::Gzip),
            ("x-gzip", Encoding::Gzip),
            (" GZIP ", Encoding::Gzip),
            ("deflate", Encoding::Deflate),
            ("br", Encoding::Brotli),
            ("zstd", Encoding::Zstd),
            ("identity, br", Encoding::Brotli),
        ] {
            assert_eq!(parse(value), Ok(want), "{value}");
        }
        assert_eq!(
            parse("compress"),
            Err("Content-Encoding 'compress': unknown coding 'compress'; expected gzip, deflate, br \
                 or zstd"
                .to_string())
        );
        let stacked = parse("gzip, br").unwrap_err();
        assert!(
            stacked.contains("stacked codings are not supported"),
            "{stacked}"
        );
        assert!(parse_content_encoding(Some(b"\xff")).is_err());
    }
}
