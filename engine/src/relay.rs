//! Relaying everything that is not `/proxy` (admin API, console, health) to the control plane
//! over its Unix socket, so users see one port. The response streams back as it arrives.

use std::rc::Rc;

use crate::forward::{copy_response_headers, exchange_head, respond_framing};
use crate::http::ResponseHead;
use crate::http::{
    RequestHead, is_hop_by_hop, write_content_length, write_header, write_status_line,
};
use crate::server::Shard;
use crate::server::respond::Client;
use crate::upstream::{BodyReader, Conn, UpstreamError, read_response_head};

/// Header through which the control plane learns the client's address.
pub const CLIENT_IP_HEADER: &str = "x-gpt-load-client-ip";

/// Idle control-plane connections kept per shard.
const CONTROL_POOL_SIZE: usize = 32;

pub async fn relay(shard: &Rc<Shard>, client: &mut Client, head: &RequestHead, body: Vec<u8>) {
    let bytes = build_request(head, client, &body);
    let timeout = shard.config.write_timeout;
    let pooled = shard.control_pool.borrow_mut().pop();
    let mut result = Err(UpstreamError::ClosedEarly { reused: false });
    if let Some(mut conn) = pooled {
        conn.reused = true;
        result = exchange_head(conn, bytes.clone(), head.method.as_ref() == "HEAD", timeout).await;
    }
    if matches!(result, Err(UpstreamError::ClosedEarly { .. })) {
        result = match Conn::connect_unix(&shard.config.control_socket).await {
            Ok(conn) => exchange_head(conn, bytes, head.method.as_ref() == "HEAD", timeout).await,
            Err(e) => Err(e),
        };
    }
    let (conn, response) = match result {
        Ok(pair) => pair,
        Err(e) => {
            tracing::error!(error = %e, "control plane unreachable");
            let _ = client
                .send_error(502, "BAD_GATEWAY", "control plane unavailable", &[])
                .await;
            return;
        }
    };
    send_back(shard, client, conn, response).await;
}

/// Relays a request whose large body (an upload, e.g. a key file) is streamed to the control
/// plane as it arrives instead of being buffered on the shard: the shard never holds it whole,
/// and the control plane can refuse it (401, 413) before it is all sent.
pub async fn relay_streamed(shard: &Rc<Shard>, client: &mut Client, head: &RequestHead, len: u64) {
    // A fresh connection: a streamed body cannot be replayed on a retry.
    let Ok(mut conn) = Conn::connect_unix(&shard.config.control_socket).await else {
        return unavailable(client).await;
    };
    if conn
        .write_all(request_head(head, client, len))
        .await
        .is_err()
    {
        return unavailable(client).await;
    }
    if crate::server::conn::pipe_body(shard, client, head, len, &mut conn)
        .await
        .is_err()
    {
        // The client's body was not read to its end: this connection cannot carry another
        // request. The control plane may still have answered (it may refuse before reading).
        client.keep_alive = false;
    }
    let was_head = head.method.as_ref() == "HEAD";
    let response = crate::time::timeout(
        shard.config.write_timeout,
        read_response_head(&mut conn, was_head),
    )
    .await;
    match response {
        Ok(Ok(response)) => send_back(shard, client, conn, response).await,
        _ => unavailable(client).await,
    }
}

/// 502 and close: the control plane could not be reached or did not answer.
async fn unavailable(client: &mut Client) {
    client.keep_alive = false;
    let _ = client
        .send_error(502, "BAD_GATEWAY", "control plane unavailable", &[])
        .await;
}

/// Streams the control plane's response back to the client; keeps the connection for reuse
/// when it ended cleanly.
async fn send_back(shard: &Rc<Shard>, client: &mut Client, mut conn: Conn, response: ResponseHead) {
    let mut out = Vec::with_capacity(512);
    write_status_line(&mut out, response.status);
    copy_response_headers(&mut out, &response, false, client.cors_origin.is_some());
    let framing = respond_framing(client, &mut out, &response);
    let mut reader = BodyReader::new(&response);
    if client
        .send_streamed(out, framing, &mut reader, &mut conn, || None)
        .await
        .is_err()
    {
        client.keep_alive = false;
        return;
    }
    let mut pool = shard.control_pool.borrow_mut();
    if reader.reusable() && pool.len() < CONTROL_POOL_SIZE {
        conn.idle_since = std::time::Instant::now();
        pool.push(conn);
    }
}

fn build_request(head: &RequestHead, client: &Client, body: &[u8]) -> Vec<u8> {
    let mut out = request_head(head, client, body.len() as u64);
    out.extend_from_slice(body);
    out
}

/// The request head for the control plane: the client's headers minus hop-by-hop ones, the
/// client's address, and the body's length.
fn request_head(head: &RequestHead, client: &Client, content_length: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(head.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(head.target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for h in &head.headers {
        let name = h.name;
        let skip = is_hop_by_hop(name)
            || ["content-length", "expect", CLIENT_IP_HEADER]
                .iter()
                .any(|n| n.eq_ignore_ascii_case(name));
        if !skip {
            write_header(&mut out, name, h.value);
        }
    }
    if head.header("host").is_none() {
        write_header(&mut out, "Host", b"localhost");
    }
    write_header(
        &mut out,
        CLIENT_IP_HEADER,
        crate::client_ip::ip_text(client.peer.ip()).as_bytes(),
    );
    write_content_length(&mut out, content_length);
    out.extend_from_slice(b"\r\n");
    out
}
