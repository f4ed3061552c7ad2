//! Writing responses to clients: whole small responses (errors, envelopes) in one write, and
//! streamed bodies framed as they arrive, each write carrying all that has arrived.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use monoio::io::AsyncWriteRentExt;
use monoio::net::TcpStream;

use crate::http::{LAST_CHUNK, write_chunk, write_content_length, write_header, write_status_line};
use crate::upstream::{BodyReader, Conn, UpstreamError};

/// The client side of a connection: the socket, bytes read but not yet consumed (a pipelined
/// next request), and what the current request said about the connection.
pub struct Client {
    pub stream: TcpStream,
    pub buf: Vec<u8>,
    pub peer: SocketAddr,
    /// The client speaks HTTP/1.0: no chunked framing towards it.
    pub http10: bool,
    /// Whether the connection stays open after the current response.
    pub keep_alive: bool,
    /// CORS for the current request: the origin to echo, when CORS is on and it is allowed.
    pub cors_origin: Option<Box<str>>,
    /// The CORS settings (shared, from the engine config).
    pub cors: Option<std::sync::Arc<crate::cors::CorsConfig>>,
}

/// How a streamed response body is framed towards the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFraming {
    Length(u64),
    Chunked,
    /// HTTP/1.0 clients without a length: the body ends when we close.
    Close,
}

impl Client {
    pub async fn write(&mut self, data: Vec<u8>) -> io::Result<()> {
        self.write_reusing(data).await.0
    }

    /// Writes all of `data` and hands the buffer back, emptied, for the next write.
    pub async fn write_reusing(&mut self, data: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        let (result, mut data) = self.stream.write_all(data).await;
        data.clear();
        (result.map(|_| ()), data)
    }

    /// Appends the end of a streamed body to `out` (the last chunk when chunked).
    pub fn frame_end(framing: ClientFraming, out: &mut Vec<u8>) {
        if framing == ClientFraming::Chunked {
            out.extend_from_slice(LAST_CHUNK);
        }
    }

    /// Writes a complete response with a JSON body.
    pub async fn send_json(
        &mut self,
        status: u16,
        body: &[u8],
        extra: &[(&str, &str)],
    ) -> io::Result<()> {
        let mut out = Vec::with_capacity(256 + body.len());
        write_status_line(&mut out, status);
        write_header(&mut out, "Content-Type", b"application/json; charset=utf-8");
        for (name, value) in extra {
            write_header(&mut out, name, value.as_bytes());
        }
        self.finish_head(&mut out, Some(body.len() as u64));
        out.extend_from_slice(body);
        self.write(out).await
    }

    /// Writes `{"code":…,"message":…}`, v1's error envelope.
    pub async fn send_error(
        &mut self,
        status: u16,
        code: &str,
        message: &str,
        extra: &[(&str, &str)],
    ) -> io::Result<()> {
        let body = serde_json::json!({ "code": code, "message": message }).to_string();
        self.send_json(status, body.as_bytes(), extra).await
    }

    /// Adds `Content-Length` (when known) and `Connection: close` if the connection ends, and
    /// the blank line.
    pub fn finish_head(&mut self, out: &mut Vec<u8>, length: Option<u64>) {
        out.extend_from_slice(&crate::cors::SECURITY_HEADER_LINES);
        if let (Some(origin), Some(cors)) = (&self.cors_origin, &self.cors) {
            write_header(out, "Access-Control-Allow-Origin", origin.as_bytes());
            write_header(out, "Access-Control-Allow-Methods", cors.methods.as_bytes());
            write_header(out, "Access-Control-Allow-Headers", cors.headers.as_bytes());
            if cors.credentials {
                write_header(out, "Access-Control-Allow-Credentials", b"true");
            }
            write_header(out, "Vary", b"Origin");
        }
        if let Some(len) = length {
            write_content_length(out, len);
        }
        if !self.keep_alive {
            write_header(out, "Connection", b"close");
        } else if self.http10 {
            write_header(out, "Connection", b"keep-alive");
        }
        out.extend_from_slice(b"\r\n");
    }

    /// The framing for a streamed body of `length` (if known), adding its header to `out`.
    pub fn choose_framing(&mut self, out: &mut Vec<u8>, length: Option<u64>) -> ClientFraming {
        match length {
            Some(n) => {
                self.finish_head(out, Some(n));
                ClientFraming::Length(n)
            }
            None if self.http10 => {
                self.keep_alive = false;
                self.finish_head(out, None);
                ClientFraming::Close
            }
            None => {
                write_header(out, "Transfer-Encoding", b"chunked");
                self.finish_head(out, None);
                ClientFraming::Chunked
            }
        }
    }

    /// Sends a response whose head is in `out` and whose body comes from `reader` on `conn`,
    /// framed for the client, as it arrives. Each write carries everything received so far:
    /// the head goes with the first piece of body when that is already in, and a body that
    /// came whole goes in one write with its end. `wait` bounds each read of the upstream (and
    /// names the timeout); `None` waits as long as it takes.
    pub async fn send_streamed(
        &mut self,
        mut out: Vec<u8>,
        framing: ClientFraming,
        reader: &mut BodyReader,
        conn: &mut Conn,
        mut wait: impl FnMut() -> Option<(Duration, &'static str)>,
    ) -> Result<(), StreamError> {
        let mut piece = Vec::new();
        loop {
            let taken = match framing {
                ClientFraming::Chunked => {
                    piece.clear();
                    let taken = reader.take_available(conn, &mut piece);
                    if !piece.is_empty() {
                        write_chunk(&mut out, &piece);
                    }
                    taken
                }
                ClientFraming::Length(_) | ClientFraming::Close => {
                    reader.take_available(conn, &mut out)
                }
            };
            taken.map_err(StreamError::Upstream)?;
            if reader.is_done() {
                Self::frame_end(framing, &mut out);
            }
            if !out.is_empty() {
                let (written, emptied) = self.write_reusing(out).await;
                written.map_err(|_| StreamError::Client)?;
                out = emptied;
            }
            if reader.is_done() {
                return Ok(());
            }
            let fill = async {
                match wait() {
                    Some((limit, what)) => crate::time::timeout(limit, reader.fill(conn))
                        .await
                        .unwrap_or(Err(UpstreamError::Timeout(what))),
                    None => reader.fill(conn).await,
                }
            };
            // A client that leaves while the upstream is quiet (an idle stream) is noticed now,
            // not at the next chunk, which may be minutes away: its sockets are let go.
            let gone = crate::server::conn::client_gone(&self.stream);
            match futures_util::future::select(std::pin::pin!(fill), std::pin::pin!(gone)).await {
                futures_util::future::Either::Left((filled, _)) => {
                    filled.map_err(StreamError::Upstream)?
                }
                futures_util::future::Either::Right(_) => return Err(StreamError::Client),
            }
        }
    }
}

/// Why a streamed response stopped before its end.
#[derive(Debug)]
pub enum StreamError {
    /// Writing to the client failed: it went away.
    Client,
    /// Reading the body from the upstream failed or timed out.
    Upstream(UpstreamError),
}
