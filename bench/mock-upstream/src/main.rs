//! `mock-upstream`: the mock as a process, for benchmarks. Serves the same routes and controls
//! as the library; only counts requests, so memory stays flat however long it runs.
//!
//! ```text
//! mock-upstream --port N [--tls] [--ca-out FILE] [--latency-ms N] [--threads N]
//! ```

use std::process::ExitCode;
use std::time::Duration;

use mock_upstream::{MockOptions, MockUpstream, Recording};

const USAGE: &str =
    "usage: mock-upstream --port N [--tls] [--ca-out FILE] [--latency-ms N] [--threads N]

  --port N        port on 127.0.0.1 (0 picks a free one; default 0)
  --tls           serve HTTPS with a fresh CA; see --ca-out
  --ca-out FILE   write the CA certificate (PEM) clients must trust to FILE
  --latency-ms N  wait N ms before every response head (default 0)
  --threads N     tokio worker threads (default 1: a current-thread runtime)";

struct Args {
    options: MockOptions,
    ca_out: Option<String>,
    threads: usize,
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("mock-upstream: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("mock-upstream: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    let upstream =
        MockUpstream::start_on_threads(args.options, args.threads).map_err(|e| e.to_string())?;
    if let (Some(path), Some(pem)) = (&args.ca_out, upstream.ca_pem()) {
        std::fs::write(path, pem)
            .map_err(|e| format!("--ca-out {path}: cannot write the CA certificate: {e}"))?;
    }
    // Scripts wait for this line: the listener is bound and accepting before it is printed.
    println!("listening on {}", upstream.url());
    let signals = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the signal runtime: {e}"))?;
    signals.block_on(async {
        let _interrupted_or_unavailable = tokio::signal::ctrl_c().await;
    });
    eprintln!(
        "mock-upstream: served {} requests",
        upstream.request_count()
    );
    Ok(())
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args {
        options: MockOptions {
            recording: Recording::CountOnly,
            ..MockOptions::default()
        },
        ca_out: None,
        threads: 1,
    };
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--port" => parsed.options.port = number(&flag, &value()?)?,
            "--tls" => parsed.options.tls = true,
            "--ca-out" => parsed.ca_out = Some(value()?),
            "--latency-ms" => {
                parsed.options.latency = Duration::from_millis(number(&flag, &value()?)?)
            }
            "--threads" => parsed.threads = number::<usize>(&flag, &value()?)?.max(1),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    if parsed.ca_out.is_some() && !parsed.options.tls {
        return Err("--ca-out needs --tls".to_owned());
    }
    Ok(parsed)
}

fn number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{flag} '{value}': not a non-negative whole number in range"))
}
