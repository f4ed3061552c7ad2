//! One client connection, one request at a time, in phases:
//! read → record → read controls → wait → answer → send; repeated while the connection is kept
//! alive. The buffers live as long as the connection, so a request allocates only what is
//! recorded.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::controls::{Controls, Framing};
use crate::formats::openai;
use crate::http::request::{MAX_HEADERS, Received};
use crate::http::{Body, Delivery, Inbox, ReadError, Reply, Shape, response};
use crate::routes;
use crate::server::Shared;

pub(crate) async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut io: S, shared: &Shared) {
    let mut inbox = Inbox::new();
    let mut body = Body::new();
    // Sized for a whole reply head plus a typical JSON body, so most replies never regrow it.
    let mut out = Vec::with_capacity(8 * 1024);
    loop {
        let received = match inbox.read_request(&mut io).await {
            Ok(Some(received)) => received,
            Ok(None) | Err(ReadError::Disconnected) => return,
            Err(ReadError::Rejected { status, message }) => {
                return reject_request(&mut io, &mut out, &mut body, status, &message).await;
            }
        };
        let keep_open = exchange(&mut io, &inbox, &received, shared, &mut body, &mut out).await;
        if !matches!(keep_open, Ok(true)) {
            let _closing_anyway = io.shutdown().await;
            return;
        }
        inbox.consume(&received);
    }
}

/// Answers one received request; `Ok(true)` if the connection stays open for the next.
async fn exchange<S: AsyncWrite + Unpin>(
    io: &mut S,
    inbox: &Inbox,
    received: &Received,
    shared: &Shared,
    body: &mut Body,
    out: &mut Vec<u8>,
) -> io::Result<bool> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let request = inbox.view(&mut headers, received)?;
    let request_index = shared.log.record(&request);
    body.clear();
    let controls = match Controls::from_request(&request) {
        Ok(controls) => controls,
        Err(message) => {
            return reject_controls(io, out, received, body, &message, request_index).await;
        }
    };
    pause(shared.latency + controls.delay).await;
    let reply = routes::answer(&request, &controls, &shared.failing_keys, body);
    if let (Shape::Whole, Some(gate)) = (reply.shape, controls.gate) {
        shared.gates.wait(gate).await;
    }
    let close = !received.keep_alive || controls.framing == Framing::Close;
    let delivery = Delivery {
        framing: controls.framing,
        close,
        chunk_delay: controls.chunk_delay,
        gate: controls.gate.map(|name| (&shared.gates, name)),
        request_index: Some(request_index),
    };
    response::send(io, out, &reply, body, &delivery).await?;
    Ok(!close)
}

/// A request the mock cannot read is answered with why, unrecorded, and the connection closed:
/// its end is unknown, so nothing after it can be read either.
async fn reject_request<S: AsyncWrite + Unpin>(
    io: &mut S,
    out: &mut Vec<u8>,
    body: &mut Body,
    status: u16,
    message: &str,
) {
    body.clear();
    openai::error(body, message, "invalid_request_error", "bad_request");
    let sent = response::send(io, out, &Reply::json(status), body, &closing(None)).await;
    if sent.is_ok() {
        let _closing_anyway = io.shutdown().await;
    }
}

/// A malformed `x-mock-*` header is the test's bug: say which one, as a 400.
async fn reject_controls<S: AsyncWrite + Unpin>(
    io: &mut S,
    out: &mut Vec<u8>,
    received: &Received,
    body: &mut Body,
    message: &str,
    request_index: usize,
) -> io::Result<bool> {
    openai::error(
        body,
        message,
        "invalid_request_error",
        "invalid_mock_control",
    );
    let delivery = Delivery {
        close: !received.keep_alive,
        ..closing(Some(request_index))
    };
    response::send(io, out, &Reply::json(400), body, &delivery).await?;
    Ok(received.keep_alive)
}

/// A plain delivery that closes the connection after the reply.
fn closing(request_index: Option<usize>) -> Delivery<'static> {
    Delivery {
        framing: Framing::Auto,
        close: true,
        chunk_delay: Duration::ZERO,
        gate: None,
        request_index,
    }
}

async fn pause(delay: Duration) {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
}
