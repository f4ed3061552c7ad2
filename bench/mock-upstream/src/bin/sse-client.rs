//! `sse-client`: opens N concurrent OpenAI-style chat streams against one URL and reports how
//! long the first SSE event and the whole stream took, as the client saw them.
//!
//! ```text
//! sse-client URL [--streams 100] [--rounds 3] [--spread-ms 0] [--chunks 20] [--chunk-delay-ms 20]
//!                [--key sk-bench-client] [--model gpt-4o-mini] [--timeout-s 30] [--header 'Name: value']...
//! ```
//!
//! Prints one line of `key=value` pairs (microseconds), for bench/compare.sh to read:
//!
//! ```text
//! ok=300 failed=0 ttfb_p50=812 ttfb_p99=2411 total_p50=382100 total_p99=385900 gap_p99=21400
//! ```
//!
//! - ttfb: from just before the request is written to the read that brought the first `data:`
//!   event (not the response head: a proxy that flushes its head early but buffers events would
//!   hide its cost behind a head-only figure).
//! - total: from the same start to the `data: [DONE]` event.
//! - gap: the largest pause between two reads of the same stream; the mock waits
//!   `chunk-delay-ms` between events, so anything above that is what the path in between added.
//!
//! `--spread-ms` starts a round's streams evenly over that time instead of all at once. Started
//! at once, a hundred streams queue at the mock's one thread (and the client's): the first event
//! of the last one then waits ~4 ms even direct, which hides what a proxy adds. Spread over less
//! than a stream lasts, all of them are still open together.
//!
//! bench/sse_client.py measures the same in Python; with a hundred streams starting at once its
//! own event loop added ~3 ms to the first event of the last ones, more than a proxy adds, so
//! the comparison uses this one (one thread, as the Python client was).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const USAGE: &str =
    "usage: sse-client URL [--streams N] [--rounds N] [--spread-ms N] [--chunks N] [--chunk-delay-ms N]
                  [--key KEY] [--model MODEL] [--timeout-s N] [--header 'Name: value']...";

const FIRST_EVENT: &[u8] = b"data: ";
const DONE: &[u8] = b"data: [DONE]";

struct Args {
    /// `host:port` of a loopback address.
    authority: String,
    path: String,
    streams: usize,
    rounds: usize,
    spread: Duration,
    chunks: u32,
    chunk_delay_ms: u32,
    key: String,
    model: String,
    timeout: Duration,
    headers: Vec<String>,
}

/// One finished stream.
struct Timing {
    ttfb: Duration,
    total: Duration,
    max_gap: Duration,
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("sse-client: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("sse-client: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("{}", runtime.block_on(run(args)));
    ExitCode::SUCCESS
}

async fn run(args: Args) -> String {
    let payload = request_bytes(&args);
    let (mut ttfbs, mut totals, mut gaps, mut failures) = (vec![], vec![], vec![], vec![]);
    for _ in 0..args.rounds {
        let round_start = tokio::time::Instant::now();
        let streams: Vec<_> = (0..args.streams)
            .map(|i| {
                let (authority, payload) = (args.authority.clone(), payload.clone());
                let start_at = round_start + args.spread * i as u32 / args.streams as u32;
                let timeout = args.timeout;
                tokio::spawn(async move {
                    tokio::time::sleep_until(start_at).await;
                    one_stream(authority, payload, timeout).await
                })
            })
            .collect();
        for stream in streams {
            match stream.await {
                Ok(Ok(timing)) => {
                    ttfbs.push(timing.ttfb);
                    totals.push(timing.total);
                    gaps.push(timing.max_gap);
                }
                Ok(Err(message)) => failures.push(message),
                Err(e) => failures.push(format!("stream task failed: {e}")),
            }
        }
    }
    for failure in failures.iter().take(3) {
        eprintln!("sse-client: {failure}");
    }
    let mut line = format!("ok={} failed={}", totals.len(), failures.len());
    if !totals.is_empty() {
        for values in [&mut ttfbs, &mut totals, &mut gaps] {
            values.sort_unstable();
        }
        for (name, values, fraction) in [
            ("ttfb_p50", &ttfbs, 0.50),
            ("ttfb_p99", &ttfbs, 0.99),
            ("total_p50", &totals, 0.50),
            ("total_p99", &totals, 0.99),
            ("gap_p99", &gaps, 0.99),
        ] {
            line += &format!(" {name}={}", percentile(values, fraction).as_micros());
        }
    }
    line
}

/// Nearest-rank percentile of a sorted, non-empty list.
fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let rank = (fraction * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn request_bytes(args: &Args) -> Vec<u8> {
    let body = format!(
        r#"{{"model":"{}","stream":true,"messages":[{{"role":"user","content":"hi"}}]}}"#,
        args.model
    );
    let mut head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nAccept: text/event-stream\r\n\
         x-mock-chunks: {}\r\nx-mock-chunk-delay-ms: {}\r\n",
        args.path, args.authority, args.key, args.chunks, args.chunk_delay_ms
    );
    for header in &args.headers {
        head += header;
        head += "\r\n";
    }
    head += &format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    [head.into_bytes(), body.into_bytes()].concat()
}

/// One stream from connect to `[DONE]`, or why it failed.
async fn one_stream(
    authority: String,
    payload: Vec<u8>,
    timeout: Duration,
) -> Result<Timing, String> {
    let mut socket = TcpStream::connect(&authority)
        .await
        .map_err(|e| format!("connect {authority}: {e}"))?;
    socket.set_nodelay(true).map_err(|e| e.to_string())?;
    let start = Instant::now();
    let deadline = tokio::time::Instant::from_std(start + timeout);
    tokio::time::timeout_at(deadline, async {
        socket
            .write_all(&payload)
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut received = Vec::with_capacity(16 * 1024);
        let mut buf = vec![0u8; 64 * 1024];
        let mut head_end = None;
        let (mut ttfb, mut last_read, mut max_gap) = (None, start, Duration::ZERO);
        loop {
            let n = socket
                .read(&mut buf)
                .await
                .map_err(|e| format!("read: {e}"))?;
            let now = Instant::now();
            if n == 0 {
                let shown = String::from_utf8_lossy(&received[..received.len().min(200)]);
                return Err(format!("connection closed before [DONE]: {shown:?}"));
            }
            if ttfb.is_some() {
                max_gap = max_gap.max(now - last_read);
            }
            last_read = now;
            received.extend_from_slice(&buf[..n]);
            if head_end.is_none() {
                head_end = find(&received, b"\r\n\r\n", 0);
                if head_end.is_some() && !received.starts_with(b"HTTP/1.1 200") {
                    let shown = String::from_utf8_lossy(&received[..received.len().min(200)]);
                    return Err(format!("not 200: {shown:?}"));
                }
            }
            let Some(body) = head_end else { continue };
            // Each search starts far enough back into what was already searched that a marker
            // split across two reads (or by chunked framing) is still found.
            let from = body.max((received.len() - n).saturating_sub(DONE.len()));
            if ttfb.is_none() && find(&received, FIRST_EVENT, body).is_some() {
                ttfb = Some(now - start);
            }
            if let (Some(ttfb), Some(_)) = (ttfb, find(&received, DONE, from)) {
                return Ok(Timing {
                    ttfb,
                    total: now - start,
                    max_gap,
                });
            }
        }
    })
    .await
    .map_err(|_| format!("stream not done after {timeout:?}"))?
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|window| window == needle)
        .map(|at| from + at)
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let url = args.next().ok_or("no URL")?;
    let rest = url
        .strip_prefix("http://")
        .ok_or("only http:// URLs (a loopback benchmark)")?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let host = authority
        .rsplit_once(':')
        .map_or(authority, |(host, _)| host);
    if !matches!(host, "127.0.0.1" | "localhost" | "[::1]") {
        return Err(format!(
            "{url}: this client only targets loopback addresses"
        ));
    }
    let mut parsed = Args {
        authority: authority.to_string(),
        path: if path.is_empty() {
            "/".into()
        } else {
            path.into()
        },
        streams: 100,
        rounds: 3,
        spread: Duration::ZERO,
        chunks: 20,
        chunk_delay_ms: 20,
        key: "sk-bench-client".into(),
        model: "gpt-4o-mini".into(),
        timeout: Duration::from_secs(30),
        headers: Vec::new(),
    };
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("{flag}: not a number: {value}"))
        };
        match flag.as_str() {
            "--streams" => parsed.streams = number()? as usize,
            "--rounds" => parsed.rounds = number()? as usize,
            "--spread-ms" => parsed.spread = Duration::from_millis(number()?),
            "--chunks" => parsed.chunks = number()? as u32,
            "--chunk-delay-ms" => parsed.chunk_delay_ms = number()? as u32,
            "--timeout-s" => parsed.timeout = Duration::from_secs(number()?),
            "--key" => parsed.key = value,
            "--model" => parsed.model = value,
            "--header" => parsed.headers.push(value),
            _ => return Err(format!("unknown argument '{flag}'")),
        }
    }
    Ok(parsed)
}
