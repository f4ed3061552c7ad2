//! One client connection: read a request head and body under the limits and timeouts, hand the
//! request to the proxy or the relay, repeat while the connection is kept alive.

use std::io;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::buf::IoBufMut;
use monoio::io::AsyncReadRent;
use monoio::net::TcpStream;

use crate::http::{BodyFraming, ChunkedDecoder, HeadError, RequestHead, parse_request_head};
use crate::route::{is_proxy_target, proxy_target};

use super::Shard;
use super::respond::Client;

/// Read size for client sockets; request heads and LLM request bodies are mostly smaller.
const CLIENT_READ_CHUNK: usize = 8 * 1024;

/// Why reading a request stopped.
enum ReadError {
    /// Nothing (more) to do on this connection: EOF, idle timeout, shutdown.
    Closed,
    /// Answer with this status and message, then close.
    Reject(u16, &'static str),
}

pub async fn serve(shard: Rc<Shard>, stream: TcpStream, peer: std::net::SocketAddr) {
    let _ = stream.set_nodelay(true);
    let mut client = Client {
        stream,
        buf: Vec::with_capacity(CLIENT_READ_CHUNK),
        peer,
        http10: false,
        keep_alive: true,
        cors_origin: None,
        cors: shard.config.cors.clone(),
    };
    loop {
        if shard.shared.is_draining() {
            return;
        }
        let head = match read_head(&shard, &mut client).await {
            Ok(head) => head,
            Err(ReadError::Closed) => return,
            Err(ReadError::Reject(status, reason)) => {
                return reject(&shard, &mut client, status, reason).await;
            }
        };
        client.http10 = head.minor_version == 0;
        client.keep_alive = head.keep_alive;
        client.cors_origin = client
            .cors
            .as_ref()
            .and_then(|c| c.allow(head.header("origin")));
        if let Some(len) = streamed_relay(&client, &head) {
            if len > shard.config.max_admin_body {
                return reject(&shard, &mut client, 413, "request body too large").await;
            }
            shard.active.set(shard.active.get() + 1);
            let relay = Box::pin(crate::relay::relay_streamed(
                &shard,
                &mut client,
                &head,
                len,
            ));
            let handled = crate::time::timeout(shard.config.write_timeout, relay).await;
            shard.active.set(shard.active.get() - 1);
            if handled.is_err() || !client.keep_alive {
                return;
            }
            continue;
        }
        let body = match read_body(&shard, &mut client, &head).await {
            Ok(body) => body,
            Err(ReadError::Closed) => return,
            Err(ReadError::Reject(status, reason)) => {
                return reject(&shard, &mut client, status, reason).await;
            }
        };
        shard.active.set(shard.active.get() + 1);
        let write_timeout = shard.config.write_timeout;
        // Pinned in place and lent to the timeout, so that the request's future (the largest
        // a connection holds) is built once where it lives instead of being moved in.
        let handled = {
            let dispatched = std::pin::pin!(dispatch(&shard, &mut client, head, body));
            crate::time::timeout(write_timeout, dispatched).await
        };
        shard.active.set(shard.active.get() - 1);
        if handled.is_err() || !client.keep_alive {
            return;
        }
    }
}

async fn dispatch(shard: &Rc<Shard>, client: &mut Client, head: RequestHead, body: Vec<u8>) {
    // With CORS on, preflights are answered here for every route, as v1's middleware does.
    if client.cors.is_some() && head.method.as_ref() == "OPTIONS" {
        let mut out = Vec::with_capacity(512);
        crate::http::write_status_line(&mut out, 204);
        client.finish_head(&mut out, None);
        if client.write(out).await.is_err() {
            client.keep_alive = false;
        }
        return;
    }
    // The proxy path is inline; the others are boxed so that their futures do not make every
    // proxy request's future (copied as it is built, level by level) larger.
    if crate::validation::is_internal_call(&shard.config, &head) {
        return Box::pin(crate::validation::serve(shard, client, &body)).await;
    }
    match proxy_target(&head.target) {
        // v1 answers a group's integration info under its proxy path; the control plane has it.
        Some(t) if t.path == "/api/integration/info" => {
            Box::pin(crate::relay::relay(shard, client, &head, body)).await
        }
        Some(_) => crate::forward::proxy(shard, client, &head, body).await,
        None => Box::pin(crate::relay::relay(shard, client, &head, body)).await,
    }
}

/// Answers a request we refuse, then closes gracefully: our side is shut for writing and what
/// the client still sends is read and discarded for a moment, so the kernel does not answer
/// it with a reset that could destroy the error response before the client reads it.
async fn reject(shard: &Shard, client: &mut Client, status: u16, reason: &str) {
    use monoio::io::AsyncWriteRent;
    client.keep_alive = false;
    let code = match status {
        413 => "REQUEST_TOO_LARGE",
        408 => "REQUEST_TIMEOUT",
        _ => "BAD_REQUEST",
    };
    if client.send_error(status, code, reason, &[]).await.is_err() {
        return;
    }
    let _ = client.stream.shutdown().await;
    let deadline = Instant::now() + LINGER;
    let mut discarded = 0;
    while discarded < LINGER_BYTES {
        client.buf.clear();
        match read_some(
            shard,
            client,
            deadline.saturating_duration_since(Instant::now()),
        )
        .await
        {
            Ok(n) if n > 0 => discarded += n,
            _ => return,
        }
    }
}

/// How long and how much a refused client may keep sending before we close regardless.
const LINGER: Duration = Duration::from_millis(500);
const LINGER_BYTES: usize = 256 * 1024;

/// Reads until a complete request head is buffered. The first byte may take the idle timeout
/// (keep-alive); the rest of the head must arrive within the read timeout.
async fn read_head(shard: &Shard, client: &mut Client) -> Result<RequestHead, ReadError> {
    let limits = &shard.config.limits;
    let mut deadline = None;
    loop {
        if !client.buf.is_empty() {
            match parse_request_head(&client.buf, limits) {
                Ok(Some(head)) => {
                    client.buf.drain(..head.head_len);
                    return Ok(head);
                }
                Ok(None) => {}
                Err(e) => return Err(ReadError::Reject(e.status(), reason_of(&e))),
            }
            deadline.get_or_insert_with(|| Instant::now() + shard.config.read_timeout);
        }
        let wait = match deadline {
            Some(d) => d.saturating_duration_since(Instant::now()),
            None => shard.config.idle_timeout,
        };
        match read_some(shard, client, wait).await {
            Ok(0) | Err(ReadTimeout::Io(_)) => return Err(ReadError::Closed),
            Ok(_) => {}
            Err(ReadTimeout::Elapsed) if deadline.is_none() => return Err(ReadError::Closed),
            Err(ReadTimeout::Elapsed) => {
                return Err(ReadError::Reject(408, "request head not received in time"));
            }
        }
    }
}

fn reason_of(e: &HeadError) -> &'static str {
    e.reason()
}

/// Admin bodies above this are streamed to the control plane rather than buffered.
const STREAM_RELAY_THRESHOLD: u64 = 1024 * 1024;

/// The body length of a request to relay streamed: a large, length-framed body of a route the
/// control plane serves (a CORS preflight is answered here, so it never qualifies).
fn streamed_relay(client: &Client, head: &RequestHead) -> Option<u64> {
    let BodyFraming::Length(len) = head.framing else {
        return None;
    };
    if len <= STREAM_RELAY_THRESHOLD {
        return None;
    }
    let preflight = client.cors.is_some() && head.method.as_ref() == "OPTIONS";
    let relayed = match proxy_target(&head.target) {
        None => true,
        Some(t) => t.path == "/api/integration/info",
    };
    (relayed && !preflight).then_some(len)
}

/// Why piping a body stopped early.
#[derive(Debug)]
pub(crate) enum PipeError {
    Client,
    Control,
}

/// Copies a length-framed request body from the client to `conn` as it arrives, within the
/// read timeout.
pub(crate) async fn pipe_body(
    shard: &Shard,
    client: &mut Client,
    head: &RequestHead,
    len: u64,
    conn: &mut crate::upstream::Conn,
) -> Result<(), PipeError> {
    send_continue(client, head)
        .await
        .map_err(|_| PipeError::Client)?;
    let deadline = Instant::now() + shard.config.read_timeout;
    let mut remaining = len;
    loop {
        let take = remaining.min(client.buf.len() as u64) as usize;
        if take > 0 {
            let rest = client.buf.split_off(take);
            let chunk = std::mem::replace(&mut client.buf, rest);
            conn.write_all(chunk)
                .await
                .map_err(|_| PipeError::Control)?;
            remaining -= take as u64;
        }
        if remaining == 0 {
            return Ok(());
        }
        // The control plane may answer before the body is in (401, 413): stop sending then.
        let read = std::pin::pin!(read_before(shard, client, deadline));
        let answered = std::pin::pin!(conn.readable());
        match futures_util::future::select(read, answered).await {
            futures_util::future::Either::Left((read, _)) => read.map_err(|_| PipeError::Client)?,
            futures_util::future::Either::Right(_) => return Err(PipeError::Control),
        }
    }
}

/// Bodies up to this are copied out of the connection's read buffer, which keeps its capacity
/// for the next request; larger ones take the buffer itself rather than be copied.
const COPIED_BODY_MAX: usize = CLIENT_READ_CHUNK / 2;

/// The first `n` bytes of `buf` (all buffered) as a body of their own, the rest left in `buf`.
/// Handing the buffer over for a small body made the next read allocate a fresh 8 KiB one.
fn take_body(buf: &mut Vec<u8>, n: usize) -> Vec<u8> {
    if n <= COPIED_BODY_MAX {
        let body = buf[..n].to_vec();
        buf.drain(..n);
        return body;
    }
    let rest = buf.split_off(n);
    std::mem::replace(buf, rest)
}

/// Reads the whole request body (buffered: retries resend it and the model is routed on).
async fn read_body(
    shard: &Shard,
    client: &mut Client,
    head: &RequestHead,
) -> Result<Vec<u8>, ReadError> {
    let max = if is_proxy_target(&head.target) {
        shard.config.max_body
    } else {
        shard.config.max_admin_body
    };
    let deadline = Instant::now() + shard.config.read_timeout;
    match head.framing {
        BodyFraming::None => Ok(Vec::new()),
        BodyFraming::Length(n) if n > max => Err(ReadError::Reject(413, "request body too large")),
        BodyFraming::Length(n) => {
            send_continue(client, head).await?;
            let n = n as usize;
            while client.buf.len() < n {
                read_before(shard, client, deadline).await?;
            }
            Ok(take_body(&mut client.buf, n))
        }
        BodyFraming::Chunked => {
            send_continue(client, head).await?;
            let mut decoder = ChunkedDecoder::new(max);
            let mut body = Vec::new();
            loop {
                let used = decoder.decode(&client.buf, &mut body).map_err(|e| {
                    if matches!(e, crate::http::ChunkedError::BodyTooLarge { .. }) {
                        ReadError::Reject(413, "request body too large")
                    } else {
                        ReadError::Reject(400, "malformed chunked request body")
                    }
                })?;
                client.buf.drain(..used);
                if decoder.is_done() {
                    return Ok(body);
                }
                read_before(shard, client, deadline).await?;
            }
        }
    }
}

/// `Expect: 100-continue`: tell the client to send the body (curl waits a second otherwise).
async fn send_continue(client: &mut Client, head: &RequestHead) -> Result<(), ReadError> {
    if head.expect_continue && client.buf.is_empty() {
        client
            .write(b"HTTP/1.1 100 Continue\r\n\r\n".to_vec())
            .await
            .map_err(|_| ReadError::Closed)?;
    }
    Ok(())
}

async fn read_before(
    shard: &Shard,
    client: &mut Client,
    deadline: Instant,
) -> Result<(), ReadError> {
    match read_some(
        shard,
        client,
        deadline.saturating_duration_since(Instant::now()),
    )
    .await
    {
        Ok(0) | Err(ReadTimeout::Io(_)) => Err(ReadError::Closed),
        Ok(_) => Ok(()),
        Err(ReadTimeout::Elapsed) => {
            Err(ReadError::Reject(408, "request body not received in time"))
        }
    }
}

enum ReadTimeout {
    Elapsed,
    Io(#[allow(dead_code)] io::Error),
}

/// One read onto the end of the client buffer, bounded by `wait` and cancelled on shutdown.
async fn read_some(
    shard: &Shard,
    client: &mut Client,
    wait: Duration,
) -> Result<usize, ReadTimeout> {
    let mut buf = std::mem::take(&mut client.buf);
    if buf.capacity() - buf.len() < CLIENT_READ_CHUNK / 2 {
        buf.reserve(CLIENT_READ_CHUNK);
    }
    let (len, cap) = (buf.len(), buf.capacity());
    let _reading = shard.reading(client.stream.as_raw_fd());
    let read = client.stream.read(buf.slice_mut(len..cap));
    let (result, slice) = match crate::time::timeout(wait, read).await {
        Ok(done) => done,
        Err(_) => return Err(ReadTimeout::Elapsed),
    };
    client.buf = slice.into_inner();
    result.map_err(ReadTimeout::Io)
}

/// How long an upstream may take before we start watching the client for going away. Most
/// answers come sooner, and watching costs two ring operations per request (a poll and its
/// cancellation), a fifth of the proxy's kernel time when the upstream answers at once. A
/// client that leaves is noticed this much later; its upstream request is cancelled all the
/// same.
const CLIENT_WATCH_AFTER: Duration = Duration::from_millis(250);

/// Resolves when the client has closed its side while we wait for the upstream (noticed from
/// [`CLIENT_WATCH_AFTER`] on); never resolves if it sends more bytes instead (a pipelined
/// request stays in the socket for later).
pub async fn client_gone(stream: &TcpStream) {
    crate::time::sleep(CLIENT_WATCH_AFTER).await;
    loop {
        if stream.readable(false).await.is_err() {
            return;
        }
        let mut byte = 0u8;
        // SAFETY: the fd belongs to `stream`, borrowed for this call; one valid byte of buffer.
        let n = unsafe {
            libc::recv(
                stream.as_raw_fd(),
                (&mut byte as *mut u8).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        match n {
            0 => return,
            1.. => return std::future::pending().await,
            _ => {
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::WouldBlock
                    && err.kind() != io::ErrorKind::Interrupted
                {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small body is copied out and the buffer keeps its capacity for the next request; a
    /// large one takes the buffer; either way the bytes after the body (a pipelined request)
    /// stay buffered, in order.
    #[test]
    fn take_body_leaves_what_follows_the_body() {
        for n in [
            0,
            1,
            COPIED_BODY_MAX,
            COPIED_BODY_MAX + 1,
            3 * CLIENT_READ_CHUNK,
        ] {
            let mut buf = Vec::with_capacity(4 * CLIENT_READ_CHUNK);
            buf.extend((0..n).map(|i| (i % 251) as u8));
            buf.extend_from_slice(b"GET / HTTP/1.1\r\n");
            let body = take_body(&mut buf, n);
            assert_eq!(body.len(), n);
            assert!(body.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8));
            assert_eq!(buf, b"GET / HTTP/1.1\r\n");
            if n <= COPIED_BODY_MAX {
                assert!(
                    buf.capacity() >= 4 * CLIENT_READ_CHUNK,
                    "buffer kept for {n}"
                );
            }
        }
    }
}
