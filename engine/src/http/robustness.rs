//! Throws many random and mutated inputs at every parser: whatever the bytes, parsing must
//! return (never panic, never overflow), and what it returns must be self-consistent.
//! Deterministic (fixed seeds), so a failure reproduces.

use super::{ChunkedDecoder, Limits, ResponseFraming, parse_request_head, parse_response_head};

/// xorshift64: tiny, deterministic, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a [u8]]) -> &'a [u8] {
        items[self.below(items.len())]
    }
}

const REQUEST_SEEDS: &[&[u8]] = &[
    b"GET /v1/models HTTP/1.1\r\nHost: api\r\n\r\n",
    b"POST http://h:1/p?q HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello",
    b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"\r\nOPTIONS * HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
];

const RESPONSE_SEEDS: &[&[u8]] = &[
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.0 200 OK\nTransfer-Encoding: gzip, chunked\nContent-Length: 1\n\n",
];

const CHUNKED_SEEDS: &[&[u8]] = &[
    b"5\r\nhello\r\n1a;x=y\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nT: 1\r\n\r\n",
    b"ffffffffffffffff\r\nabc",
    b"3 ;a\r\nabc\r\n0\r\n\r\n",
];

/// Bytes that matter to the grammars, so mutations hit interesting paths often.
const SPECIAL: &[u8] = b"\r\n :;,\t\0\x0b0f9/?*#@\"HTTP1.";

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut buf = seed.to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(buf.len() + 1);
        let byte = if rng.below(2) == 0 {
            SPECIAL[rng.below(SPECIAL.len())]
        } else {
            rng.next() as u8
        };
        match rng.below(5) {
            0 if at < buf.len() => buf[at] = byte,
            1 if at < buf.len() => drop(buf.remove(at)),
            2 => buf.truncate(at),
            3 => {
                let from = rng.below(buf.len());
                let piece: Vec<u8> = buf[from..].iter().take(rng.below(16)).copied().collect();
                buf.splice(at..at, piece);
            }
            _ => buf.insert(at, byte),
        }
    }
    buf
}

fn random_bytes(rng: &mut Rng) -> Vec<u8> {
    (0..rng.below(200))
        .map(|_| {
            if rng.below(3) == 0 {
                SPECIAL[rng.below(SPECIAL.len())]
            } else {
                rng.next() as u8
            }
        })
        .collect()
}

fn input(rng: &mut Rng, seeds: &[&[u8]]) -> Vec<u8> {
    if rng.below(4) == 0 {
        random_bytes(rng)
    } else {
        let seed = rng.pick(seeds);
        mutate(rng, seed)
    }
}

/// Checks one request parse; returns 0 for accepted, 1 for incomplete, 2 for refused.
fn check_request(buf: &[u8], limits: &Limits) -> usize {
    let result = parse_request_head(buf, limits);
    if let Ok(Some(head)) = &result {
        assert!(head.head_len <= buf.len().min(limits.max_head));
        assert!(head.headers.len() <= limits.max_headers);
        assert!(head.target.starts_with('/') || &*head.target == "*");
        // Any shorter prefix of an accepted head is incomplete or refused, never a head.
        let shorter = &buf[..head.head_len - 1];
        assert!(!matches!(parse_request_head(shorter, limits), Ok(Some(_))));
    }
    match result {
        Ok(Some(_)) => 0,
        Ok(None) => 1,
        Err(_) => 2,
    }
}

fn check_response(buf: &[u8]) {
    for was_head in [false, true] {
        if let Ok(Some(head)) = parse_response_head(buf, was_head, 256) {
            assert!(head.head_len <= buf.len().min(256));
            assert!((100..=999).contains(&head.status));
            if head.framing == ResponseFraming::UntilClose {
                assert!(!head.keep_alive);
            }
        }
    }
}

/// Decodes whole and in random pieces; both must agree, whatever the bytes.
fn check_chunked(rng: &mut Rng, buf: &[u8]) {
    let mut whole = ChunkedDecoder::new(64);
    let mut out_whole = Vec::new();
    let r_whole = whole.decode(buf, &mut out_whole);
    let mut split = ChunkedDecoder::new(64);
    let (mut out_split, mut pos, mut r_split) = (Vec::new(), 0, Ok(0));
    while pos < buf.len() && !split.is_done() {
        let end = (pos + 1 + rng.below(8)).min(buf.len());
        match split.decode(&buf[pos..end], &mut out_split) {
            Ok(n) => pos += n,
            Err(e) => {
                r_split = Err(e);
                break;
            }
        }
    }
    assert_eq!(r_whole.is_ok(), r_split.is_ok(), "{buf:?}");
    if let Ok(n) = r_whole {
        assert_eq!(
            (n, &out_whole, whole.is_done()),
            (pos, &out_split, split.is_done())
        );
        assert!(out_whole.len() <= 64);
    }
}

#[test]
fn random_and_mutated_input_never_panics() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let tight = Limits {
        max_request_line: 24,
        max_head: 96,
        max_headers: 3,
    };
    let mut outcomes = [0usize; 3];
    for _ in 0..100_000 {
        let req = input(&mut rng, REQUEST_SEEDS);
        outcomes[check_request(&req, &Limits::default())] += 1;
        check_request(&req, &tight);
        let resp = input(&mut rng, RESPONSE_SEEDS);
        check_response(&resp);
        let chunked = input(&mut rng, CHUNKED_SEEDS);
        check_chunked(&mut rng, &chunked);
    }
    // The run is only worth something if it reached all three outcomes in volume.
    assert!(outcomes.iter().all(|&n| n > 5_000), "{outcomes:?}");
}
