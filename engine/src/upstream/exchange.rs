//! One HTTP/1.1 exchange on an upstream connection: the response head (interim 1xx skipped) and
//! a body reader that yields data as it arrives, whatever the framing.

use std::time::Duration;

use monoio::buf::IoBuf;

use crate::http::{ChunkedDecoder, ResponseFraming, ResponseHead, parse_response_head};

use super::{Conn, UpstreamError};

/// Largest response head accepted from an upstream.
pub const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// Writes the request and waits for the response head, within `timeout`. A write failure on a
/// pooled connection is reported as `ClosedEarly { reused: true }`: worth one fresh retry.
pub async fn exchange_head<B: IoBuf + 'static>(
    mut conn: Conn,
    bytes: B,
    was_head: bool,
    timeout: Duration,
) -> Result<(Conn, ResponseHead), UpstreamError> {
    // Built in place and lent to the timeout rather than moved into it.
    let answer = {
        let exchange = std::pin::pin!(async {
            if let Err(e) = conn.write_all(bytes).await {
                return Err(if conn.reused {
                    UpstreamError::ClosedEarly { reused: true }
                } else {
                    UpstreamError::Io(format!("write to upstream: {e}"))
                });
            }
            read_response_head(&mut conn, was_head).await
        });
        crate::time::timeout(timeout, exchange).await
    };
    match answer {
        Ok(Ok(head)) => Ok((conn, head)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(UpstreamError::Timeout(
            "no response header within response_header_timeout",
        )),
    }
}

/// Reads the final response head from `conn`, leaving any body bytes in `conn.buf`.
pub async fn read_response_head(
    conn: &mut Conn,
    was_head: bool,
) -> Result<ResponseHead, UpstreamError> {
    let mut received_any = false;
    loop {
        match parse_response_head(&conn.buf, was_head, MAX_RESPONSE_HEAD) {
            Ok(Some(head)) => {
                conn.buf.drain(..head.head_len);
                if head.is_interim() {
                    continue;
                }
                return Ok(head);
            }
            Ok(None) => {}
            Err(e) => return Err(UpstreamError::Protocol(e.reason().to_string())),
        }
        match conn.read_more().await {
            Ok(0) if received_any || !conn.buf.is_empty() => {
                return Err(UpstreamError::Io(
                    "unexpected EOF in the response head".into(),
                ));
            }
            Ok(0) => {
                return Err(UpstreamError::ClosedEarly {
                    reused: conn.reused,
                });
            }
            Ok(_) => received_any = true,
            Err(e) if !received_any && conn.reused => {
                tracing::debug!(error = %e, "pooled upstream connection failed");
                return Err(UpstreamError::ClosedEarly { reused: true });
            }
            Err(e) => return Err(UpstreamError::Io(format!("read from upstream: {e}"))),
        }
    }
}

/// Reads a response body in pieces as they arrive, decoding chunked framing.
pub struct BodyReader {
    framing: ResponseFraming,
    remaining: u64,
    chunked: Option<ChunkedDecoder>,
    done: bool,
    /// Whether the connection may be reused once the body is done.
    reusable: bool,
}

impl BodyReader {
    pub fn new(head: &ResponseHead) -> Self {
        let (remaining, chunked) = match head.framing {
            ResponseFraming::Length(n) => (n, None),
            ResponseFraming::Chunked => (0, Some(ChunkedDecoder::new(u64::MAX))),
            _ => (0, None),
        };
        let done = matches!(head.framing, ResponseFraming::Empty)
            || matches!(head.framing, ResponseFraming::Length(0));
        Self {
            framing: head.framing,
            remaining,
            chunked,
            done,
            reusable: head.keep_alive && !matches!(head.framing, ResponseFraming::UntilClose),
        }
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    /// True once the body ended cleanly on a keep-alive connection.
    pub fn reusable(&self) -> bool {
        self.done && self.reusable
    }

    /// Appends the next piece of body to `out`. `Ok(false)` means the body is complete and
    /// nothing was appended.
    pub async fn next(
        &mut self,
        conn: &mut Conn,
        out: &mut Vec<u8>,
    ) -> Result<bool, UpstreamError> {
        loop {
            if self.take_available(conn, out)? {
                return Ok(true);
            }
            if self.done {
                return Ok(false);
            }
            self.fill(conn).await?;
        }
    }

    /// Appends to `out` whatever body the connection has already received, without reading;
    /// true if anything was appended. Lets a caller send all it has in one write.
    pub fn take_available(
        &mut self,
        conn: &mut Conn,
        out: &mut Vec<u8>,
    ) -> Result<bool, UpstreamError> {
        if self.done || conn.buf.is_empty() {
            return Ok(false);
        }
        self.take_buffered(conn, out)
    }

    /// Reads more of the body from the upstream (one read). A close ends an until-close body
    /// and is an error for any other.
    pub async fn fill(&mut self, conn: &mut Conn) -> Result<(), UpstreamError> {
        match conn.read_more().await {
            Ok(0) if matches!(self.framing, ResponseFraming::UntilClose) => {
                self.done = true;
                Ok(())
            }
            Ok(0) => Err(UpstreamError::Io(
                "upstream closed the connection mid-body".into(),
            )),
            Ok(_) => Ok(()),
            Err(e) => Err(UpstreamError::Io(format!("read upstream body: {e}"))),
        }
    }

    /// Moves decoded bytes from the connection's buffer to `out`; true if any were moved.
    fn take_buffered(&mut self, conn: &mut Conn, out: &mut Vec<u8>) -> Result<bool, UpstreamError> {
        let before = out.len();
        match self.framing {
            ResponseFraming::Length(_) => {
                let n = (self.remaining.min(conn.buf.len() as u64)) as usize;
                out.extend_from_slice(&conn.buf[..n]);
                conn.buf.drain(..n);
                self.remaining -= n as u64;
                self.done = self.remaining == 0;
            }
            ResponseFraming::Chunked => {
                let decoder = self
                    .chunked
                    .get_or_insert_with(|| ChunkedDecoder::new(u64::MAX));
                let used = decoder
                    .decode(&conn.buf, out)
                    .map_err(|e| UpstreamError::Protocol(format!("chunked body: {e}")))?;
                conn.buf.drain(..used);
                self.done = decoder.is_done();
            }
            ResponseFraming::UntilClose => {
                out.extend_from_slice(&conn.buf);
                conn.buf.clear();
            }
            ResponseFraming::Empty => self.done = true,
        }
        Ok(out.len() > before)
    }

    /// Reads the rest of the body into `out`, up to `limit` bytes (the rest is discarded and the
    /// connection is then not reusable).
    pub async fn read_to_end(
        &mut self,
        conn: &mut Conn,
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), UpstreamError> {
        while self.next(conn, out).await? {
            if out.len() > limit {
                out.truncate(limit);
                self.reusable = false;
                self.done = true;
                break;
            }
        }
        Ok(())
    }
}
