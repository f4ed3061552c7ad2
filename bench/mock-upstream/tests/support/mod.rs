//! A raw HTTP/1.1 client over any byte stream, so the tests see exactly what the mock puts on the
//! wire: framing, chunk boundaries, timing. Every read gives up after [`PATIENCE`].

#![allow(dead_code)] // each test binary uses a different part of it

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long any single read may take before the test fails instead of hanging.
pub const PATIENCE: Duration = Duration::from_secs(10);

pub struct RawClient<S> {
    io: S,
    /// Received, not yet consumed.
    buf: Vec<u8>,
}

#[derive(Debug)]
pub struct Head {
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// One SSE event: its `event:` name, if any, and its `data:`.
#[derive(Debug, PartialEq)]
pub struct Event {
    pub name: Option<String>,
    pub data: String,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        find(&self.headers, name)
    }
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        find(&self.headers, name)
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("body is UTF-8")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }

    pub fn events(&self) -> Vec<Event> {
        parse_events(&self.text())
    }
}

fn find<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

pub fn parse_events(text: &str) -> Vec<Event> {
    text.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let mut event = Event {
                name: None,
                data: String::new(),
            };
            for line in block.lines() {
                if let Some(name) = line.strip_prefix("event: ") {
                    event.name = Some(name.to_owned());
                } else if let Some(data) = line.strip_prefix("data: ") {
                    event.data.push_str(data);
                } else {
                    panic!("unexpected SSE line {line:?} in {block:?}");
                }
            }
            event
        })
        .collect()
}

impl RawClient<TcpStream> {
    pub async fn connect(port: u16) -> RawClient<TcpStream> {
        let io = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect to the mock");
        RawClient::new(io)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> RawClient<S> {
    pub fn new(io: S) -> RawClient<S> {
        RawClient {
            io,
            buf: Vec::new(),
        }
    }

    pub async fn send(&mut self, raw: &[u8]) {
        self.io.write_all(raw).await.expect("write to the mock");
        self.io.flush().await.expect("flush to the mock");
    }

    pub async fn post(&mut self, path: &str, headers: &[(&str, &str)], body: &str) {
        let request = request("POST", path, headers, body);
        self.send(request.as_bytes()).await;
    }

    pub async fn get(&mut self, path: &str, headers: &[(&str, &str)]) {
        let request = request("GET", path, headers, "");
        self.send(request.as_bytes()).await;
    }

    /// POST, then read the whole response.
    pub async fn exchange(&mut self, path: &str, headers: &[(&str, &str)], body: &str) -> Response {
        self.post(path, headers, body).await;
        self.read_response().await
    }

    pub async fn read_response(&mut self) -> Response {
        let head = self.read_head().await;
        let body = self.read_body(&head).await;
        Response {
            status: head.status,
            headers: head.headers,
            body,
        }
    }

    pub async fn read_head(&mut self) -> Head {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut response = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(len) =
                response.parse(&self.buf).expect("a valid response head")
            {
                let head = Head {
                    status: response.code.expect("a status"),
                    headers: response
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_ascii_lowercase(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect(),
                };
                self.buf.drain(..len);
                return head;
            }
            assert!(
                self.read_more().await > 0,
                "connection closed before the response head"
            );
        }
    }

    pub async fn read_body(&mut self, head: &Head) -> Vec<u8> {
        if head.header("transfer-encoding").is_some() {
            let mut body = Vec::new();
            while let Some(chunk) = self.next_chunk().await {
                body.extend_from_slice(&chunk);
            }
            return body;
        }
        if let Some(len) = head.header("content-length") {
            let len: usize = len.parse().expect("a numeric content-length");
            return self.take(len).await;
        }
        while self.read_more().await > 0 {}
        std::mem::take(&mut self.buf)
    }

    /// The next chunk of a chunked body; `None` at the last (empty) chunk.
    pub async fn next_chunk(&mut self) -> Option<Vec<u8>> {
        let (line_len, size) = loop {
            match httparse::parse_chunk_size(&self.buf).expect("a valid chunk size") {
                httparse::Status::Complete(parsed) => break parsed,
                httparse::Status::Partial => {
                    assert!(self.read_more().await > 0, "connection closed mid-body");
                }
            }
        };
        let size = usize::try_from(size).expect("chunk fits in memory");
        let framed = self.take(line_len + size + 2).await;
        assert_eq!(&framed[line_len + size..], b"\r\n", "chunk ends with CRLF");
        (size > 0).then(|| framed[line_len..line_len + size].to_vec())
    }

    /// Exactly `len` bytes.
    pub async fn take(&mut self, len: usize) -> Vec<u8> {
        while self.buf.len() < len {
            assert!(self.read_more().await > 0, "connection closed mid-body");
        }
        self.buf.drain(..len).collect()
    }

    /// Whether anything arrives within `wait` (the bytes are kept for the next read).
    pub async fn receives_within(&mut self, wait: Duration) -> bool {
        if !self.buf.is_empty() {
            return true;
        }
        let mut byte = [0u8; 4096];
        match tokio::time::timeout(wait, self.io.read(&mut byte)).await {
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&byte[..n]);
                true
            }
            Ok(Err(_)) => true,
            Err(_elapsed) => false,
        }
    }

    /// True once the server has closed the connection (EOF with nothing buffered).
    pub async fn is_closed(&mut self) -> bool {
        self.buf.is_empty() && self.read_more().await == 0
    }

    async fn read_more(&mut self) -> usize {
        let mut chunk = [0u8; 16 * 1024];
        let read = tokio::time::timeout(PATIENCE, self.io.read(&mut chunk))
            .await
            .expect("the mock answers within PATIENCE");
        let n = read.unwrap_or(0);
        self.buf.extend_from_slice(&chunk[..n]);
        n
    }
}

pub fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> String {
    let mut request = format!("{method} {path} HTTP/1.1\r\nhost: mock\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if method != "GET" || !body.is_empty() {
        request.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    request.push_str(body);
    request
}
