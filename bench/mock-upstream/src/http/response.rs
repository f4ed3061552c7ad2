//! Writing a reply: the head, then the body parts in the framing the request asked for.
//!
//! A reply's body is built completely before anything is sent (see [`Body`]); streaming only
//! changes *when* the parts leave: one write per part, paced by `x-mock-chunk-delay-ms` and held
//! after the first part by `x-mock-gate`. Building first is what lets `x-mock-framing: length`
//! announce a `Content-Length` for a stream.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::controls::{Framing, Gates};

/// The head of a reply, chosen by a route or a control.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) content_type: &'static str,
    pub(crate) shape: Shape,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    /// Sent in one write.
    Whole,
    /// Sent part by part (SSE events, JSON array elements), each flushed on its own.
    Stream,
}

impl Reply {
    pub(crate) fn json(status: u16) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            shape: Shape::Whole,
        }
    }
}

/// A reply body cut into parts, in one buffer reused for every request of a connection.
pub(crate) struct Body {
    bytes: Vec<u8>,
    /// Where each finished part ends in `bytes`.
    part_ends: Vec<usize>,
}

impl Body {
    pub(crate) fn new() -> Body {
        Body {
            bytes: Vec::with_capacity(4096),
            part_ends: Vec::new(),
        }
    }

    pub(crate) fn clear(&mut self) {
        self.bytes.clear();
        self.part_ends.clear();
    }

    /// The buffer the current part is written into.
    pub(crate) fn bytes(&mut self) -> &mut Vec<u8> {
        &mut self.bytes
    }

    /// Closes the current part; what is written next starts a new one.
    pub(crate) fn end_part(&mut self) {
        self.part_ends.push(self.bytes.len());
    }

    fn len(&self) -> usize {
        self.bytes.len()
    }

    /// The finished parts, then whatever was written after the last `end_part`. Never empty:
    /// an empty body is one empty part.
    fn parts(&self) -> impl Iterator<Item = &[u8]> {
        let last_end = self.part_ends.last().copied().unwrap_or(0);
        let tail =
            (last_end < self.bytes.len() || self.part_ends.is_empty()).then_some(self.bytes.len());
        let starts = std::iter::once(0).chain(self.part_ends.iter().copied());
        let ends = self.part_ends.iter().copied().chain(tail);
        starts.zip(ends).map(|(start, end)| &self.bytes[start..end])
    }
}

/// How a reply leaves: framing, pacing, gate, and what happens to the connection after it.
pub(crate) struct Delivery<'a> {
    pub(crate) framing: Framing,
    /// The connection closes after this reply (the client asked, or the framing needs it).
    pub(crate) close: bool,
    pub(crate) chunk_delay: Duration,
    pub(crate) gate: Option<(&'a Gates, &'a str)>,
    /// The request's index in the log, echoed as `x-mock-request-index`; `None` when the
    /// request was too malformed to record.
    pub(crate) request_index: Option<usize>,
}

/// The framing actually written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wire {
    Length,
    Chunked,
    /// Neither length nor chunks: the body ends when the connection closes.
    UntilClose,
}

impl Delivery<'_> {
    fn wire(&self, shape: Shape) -> Wire {
        match (self.framing, shape) {
            (Framing::Close, _) => Wire::UntilClose,
            (Framing::Length, _) | (Framing::Auto, Shape::Whole) => Wire::Length,
            (Framing::Auto, Shape::Stream) => Wire::Chunked,
        }
    }
}

/// Writes `reply` with `body`; `out` is the connection's reusable output buffer.
pub(crate) async fn send<W>(
    io: &mut W,
    out: &mut Vec<u8>,
    reply: &Reply,
    body: &Body,
    delivery: &Delivery<'_>,
) -> io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    let wire = delivery.wire(reply.shape);
    let streaming = reply.shape == Shape::Stream;
    out.clear();
    write_head(out, reply, wire, body.len(), delivery);
    let mut parts = body.parts().peekable();
    let mut first = true;
    while let Some(part) = parts.next() {
        if streaming && !first && !delivery.chunk_delay.is_zero() {
            tokio::time::sleep(delivery.chunk_delay).await;
        }
        frame(out, wire, part);
        let last = parts.peek().is_none();
        if last && wire == Wire::Chunked {
            out.extend_from_slice(b"0\r\n\r\n");
        }
        if streaming || last {
            io.write_all(out).await?;
            io.flush().await?;
            out.clear();
        }
        if let (true, true, Some((gates, name))) = (streaming, first, delivery.gate) {
            gates.wait(name).await;
        }
        first = false;
    }
    Ok(())
}

fn write_head(
    out: &mut Vec<u8>,
    reply: &Reply,
    wire: Wire,
    body_len: usize,
    delivery: &Delivery<'_>,
) {
    let status = reply.status;
    put!(
        out,
        "HTTP/1.1 {status} {}\r\ncontent-type: {}\r\n",
        reason(status),
        reply.content_type
    );
    match wire {
        Wire::Length => put!(out, "content-length: {body_len}\r\n"),
        Wire::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Wire::UntilClose => {}
    }
    if reply.shape == Shape::Stream {
        out.extend_from_slice(b"cache-control: no-cache\r\n");
    }
    if let Some(index) = delivery.request_index {
        put!(out, "x-mock-request-index: {index}\r\n");
    }
    if delivery.close || wire == Wire::UntilClose {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

fn frame(out: &mut Vec<u8>, wire: Wire, part: &[u8]) {
    match wire {
        // An empty chunk would end the body early.
        Wire::Chunked if part.is_empty() => {}
        Wire::Chunked => {
            put!(out, "{:x}\r\n", part.len());
            out.extend_from_slice(part);
            out.extend_from_slice(b"\r\n");
        }
        Wire::Length | Wire::UntilClose => out.extend_from_slice(part),
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        529 => "Overloaded",
        _ => "Mock Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(body: &Body) -> Vec<&[u8]> {
        body.parts().collect()
    }

    #[test]
    fn body_parts_include_the_unfinished_tail() {
        let mut body = Body::new();
        assert_eq!(parts(&body), vec![&b""[..]]);
        body.bytes().extend_from_slice(b"whole");
        assert_eq!(parts(&body), vec![&b"whole"[..]]);
        body.end_part();
        body.bytes().extend_from_slice(b"next");
        assert_eq!(parts(&body), vec![&b"whole"[..], &b"next"[..]]);
        body.end_part();
        assert_eq!(parts(&body), vec![&b"whole"[..], &b"next"[..]]);
    }
}
