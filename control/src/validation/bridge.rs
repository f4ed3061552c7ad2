//! The control plane's end of the validation bridge: a small HTTP/1.1 client that asks the
//! engine, over loopback on its public port, to send one validation request
//! (`engine::validation`). One keep-alive connection per validation worker; a connection the
//! engine closed while idle is replaced once, transparently.
//!
//! What it is not: a general HTTP client. It speaks to our own engine only, which always
//! answers with a `Content-Length` body.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use engine::validation::{SECRET_HEADER, VALIDATE_PATH, ValidateRequest, Verdict};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Time allowed beyond the validation timeout for the engine's own work and the loopback hop.
const MARGIN: Duration = Duration::from_secs(5);
/// Largest answer accepted from the engine (a verdict is a few hundred bytes; its error message
/// is at most 2 KiB).
const MAX_ANSWER: usize = 64 * 1024;

/// A fresh secret per process: 244 random bits as 64 hex characters (two v4 UUIDs).
pub fn new_secret() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Where and how to reach the engine's validation route.
pub struct Bridge {
    addr: SocketAddr,
    secret: String,
}

/// One worker's connection to the engine, kept open between validations.
#[derive(Default)]
pub struct EngineConn {
    stream: Option<BufReader<TcpStream>>,
}

impl Bridge {
    /// `listen` is the engine's listen address; an unspecified one (0.0.0.0, ::) is reached on
    /// the loopback address of its family.
    pub fn new(listen: SocketAddr, secret: String) -> Self {
        let ip = match listen.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        Self {
            addr: SocketAddr::new(ip, listen.port()),
            secret,
        }
    }

    /// Asks the engine to validate; `Err` means no verdict (the engine is unreachable,
    /// shutting down, or refused the call) and says why.
    pub async fn validate(
        &self,
        conn: &mut EngineConn,
        request: &ValidateRequest,
    ) -> Result<Verdict, String> {
        let body = serde_json::to_vec(request).map_err(|e| e.to_string())?;
        let bound = Duration::from_millis(request.timeout_ms) + MARGIN;
        let (status, answer) = match tokio::time::timeout(bound, self.call(conn, &body)).await {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => return Err(format!("engine at {}: {e}", self.addr)),
            Err(_) => {
                conn.stream = None;
                return Err(format!(
                    "engine at {}: no answer within {bound:?}",
                    self.addr
                ));
            }
        };
        if status != 200 {
            let text = String::from_utf8_lossy(&answer);
            return Err(format!("engine refused the validation ({status}): {text}"));
        }
        serde_json::from_slice(&answer).map_err(|e| format!("engine answer: {e}"))
    }

    /// One call; a kept connection that fails is replaced by a fresh one for a second try.
    async fn call(&self, conn: &mut EngineConn, body: &[u8]) -> io::Result<(u16, Vec<u8>)> {
        if let Some(stream) = conn.stream.as_mut() {
            match self.exchange(stream, body).await {
                Ok((status, answer, keep)) => {
                    if !keep {
                        conn.stream = None;
                    }
                    return Ok((status, answer));
                }
                Err(e) => {
                    tracing::debug!(error = %e, "kept engine connection failed; reconnecting")
                }
            }
        }
        conn.stream = None;
        let stream = TcpStream::connect(self.addr).await?;
        let _ = stream.set_nodelay(true);
        let mut stream = BufReader::new(stream);
        let (status, answer, keep) = self.exchange(&mut stream, body).await?;
        if keep {
            conn.stream = Some(stream);
        }
        Ok((status, answer))
    }

    /// Writes the request and reads the answer: (status, body, connection reusable).
    async fn exchange(
        &self,
        stream: &mut BufReader<TcpStream>,
        body: &[u8],
    ) -> io::Result<(u16, Vec<u8>, bool)> {
        let head = format!(
            "POST {VALIDATE_PATH} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             {SECRET_HEADER}: {}\r\nContent-Length: {}\r\n\r\n",
            self.addr,
            self.secret,
            body.len()
        );
        let mut request = head.into_bytes();
        request.extend_from_slice(body);
        stream.get_mut().write_all(&request).await?;
        let mut line = String::new();
        if stream.read_line(&mut line).await? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed"));
        }
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| bad(format!("bad status line {line:?}")))?;
        let (length, keep) = read_headers(stream).await?;
        if length > MAX_ANSWER {
            return Err(bad(format!("answer of {length} bytes is too long")));
        }
        let mut answer = vec![0; length];
        stream.read_exact(&mut answer).await?;
        Ok((status, answer, keep))
    }
}

/// Reads header lines to the blank one: (Content-Length, keep-alive).
async fn read_headers(stream: &mut BufReader<TcpStream>) -> io::Result<(usize, bool)> {
    let (mut length, mut keep) = (None, true);
    loop {
        let mut line = String::new();
        if stream.read_line(&mut line).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed in the head",
            ));
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse::<usize>().ok();
        } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
            keep = false;
        }
    }
    let length = length.ok_or_else(|| bad("answer without Content-Length".into()))?;
    Ok((length, keep))
}

fn bad(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_listen_addresses_are_reached_on_loopback() {
        let bridge = Bridge::new("0.0.0.0:3001".parse().unwrap(), new_secret());
        assert_eq!(bridge.addr, "127.0.0.1:3001".parse().unwrap());
        let bridge = Bridge::new("[::]:3001".parse().unwrap(), String::new());
        assert_eq!(bridge.addr, "[::1]:3001".parse().unwrap());
        let bridge = Bridge::new("10.0.0.5:80".parse().unwrap(), String::new());
        assert_eq!(bridge.addr, "10.0.0.5:80".parse().unwrap());
    }

    #[test]
    fn secrets_are_long_and_fresh() {
        let (a, b) = (new_secret(), new_secret());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }
}
