//! The `x-mock-*` request headers, parsed once per request.

use std::time::Duration;

use super::{DEFAULT_CHUNKS, MAX_CHUNKS};
use crate::http::RequestView;

/// What the request's control headers ask for; borrowed from the request.
#[derive(Debug)]
pub(crate) struct Controls<'a> {
    pub(crate) status: Option<u16>,
    pub(crate) body: Option<&'a str>,
    pub(crate) delay: Duration,
    pub(crate) chunks: usize,
    pub(crate) chunk_delay: Duration,
    pub(crate) gate: Option<&'a str>,
    pub(crate) framing: Framing,
}

/// How the response body is delimited on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// `Content-Length` for whole replies, chunked for streams.
    Auto,
    Length,
    Close,
}

impl<'a> Controls<'a> {
    /// Reads every `x-mock-*` header in one pass; the error names the header and the bad value.
    pub(crate) fn from_request(request: &RequestView<'a>) -> Result<Controls<'a>, String> {
        let mut controls = Controls {
            status: None,
            body: None,
            delay: Duration::ZERO,
            chunks: DEFAULT_CHUNKS,
            chunk_delay: Duration::ZERO,
            gate: None,
            framing: Framing::Auto,
        };
        for header in request.headers {
            let Some(control) = strip_prefix_ignore_case(header.name, "x-mock-") else {
                continue;
            };
            let value = std::str::from_utf8(header.value)
                .map_err(|_| format!("{}: value is not UTF-8", header.name))?
                .trim();
            controls.apply(control, value)?;
        }
        Ok(controls)
    }

    fn apply(&mut self, control: &str, value: &'a str) -> Result<(), String> {
        let is = |name: &str| control.eq_ignore_ascii_case(name);
        if is("status") {
            self.status = Some(parse_status(value)?);
        } else if is("body") {
            self.body = Some(value);
        } else if is("delay-ms") {
            self.delay = parse_millis(super::DELAY_MS, value)?;
        } else if is("chunks") {
            self.chunks = parse_chunks(value)?;
        } else if is("chunk-delay-ms") {
            self.chunk_delay = parse_millis(super::CHUNK_DELAY_MS, value)?;
        } else if is("gate") {
            self.gate = Some(value);
        } else if is("framing") {
            self.framing = parse_framing(value)?;
        }
        // Unknown x-mock-* headers are left alone: a newer test may send controls we ignore.
        Ok(())
    }
}

fn strip_prefix_ignore_case<'n>(name: &'n str, prefix: &str) -> Option<&'n str> {
    let head = name.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &name[prefix.len()..])
}

fn parse_status(value: &str) -> Result<u16, String> {
    value
        .parse::<u16>()
        .ok()
        .filter(|status| (100..=999).contains(status))
        .ok_or_else(|| {
            format!(
                "{} '{value}': not a status code between 100 and 999",
                super::STATUS
            )
        })
}

fn parse_millis(header: &str, value: &str) -> Result<Duration, String> {
    value
        .parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| format!("{header} '{value}': not a whole number of milliseconds"))
}

fn parse_chunks(value: &str) -> Result<usize, String> {
    value
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_CHUNKS).contains(n))
        .ok_or_else(|| {
            format!(
                "{} '{value}': not a count between 1 and {MAX_CHUNKS}",
                super::CHUNKS
            )
        })
}

fn parse_framing(value: &str) -> Result<Framing, String> {
    let is = |name: &str| value.eq_ignore_ascii_case(name);
    if is("close") {
        Ok(Framing::Close)
    } else if is("length") {
        Ok(Framing::Length)
    } else if is("auto") || value.is_empty() {
        Ok(Framing::Auto)
    } else {
        Err(format!(
            "{} '{value}': expected 'close', 'length' or 'auto'",
            super::FRAMING
        ))
    }
}
