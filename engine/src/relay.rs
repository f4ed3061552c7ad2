//! Relaying everything that is not `/proxy` (admin API, console, health) to the control plane
//! over its Unix socket, so users see one port. The response streams back as it arrives.

use std::rc::Rc;

use crate::forward::{copy_response_headers, exchange_head, respond_framing};
use crate::http::{RequestHead, is_hop_by_hop, write_header, write_status_line};
use crate::server::Shard;
use crate::server::respond::Client;
use crate::upstream::{BodyReader, Conn, UpstreamError};

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
    let (mut conn, response) = match result {
        Ok(pair) => pair,
        Err(e) => {
            tracing::error!(error = %e, "control plane unreachable");
            let _ = client
                .send_error(502, "BAD_GATEWAY", "control plane unavailable", &[])
                .await;
            return;
        }
    };
    let mut out = Vec::with_capacity(512);
    write_status_line(&mut out, response.status);
    copy_response_headers(&mut out, &response, false, client.cors_origin.is_some());
    let framing = respond_framing(client, &mut out, &response);
    if client.write(out).await.is_err() {
        client.keep_alive = false;
        return;
    }
    let mut reader = BodyReader::new(&response);
    let mut piece = Vec::new();
    loop {
        piece.clear();
        match reader.next(&mut conn, &mut piece).await {
            Ok(true) => {
                if client.send_piece(framing, &piece).await.is_err() {
                    client.keep_alive = false;
                    return;
                }
            }
            Ok(false) => break,
            Err(_) => {
                client.keep_alive = false;
                return;
            }
        }
    }
    if client.finish_body(framing).await.is_err() {
        client.keep_alive = false;
    }
    let mut pool = shard.control_pool.borrow_mut();
    if reader.reusable() && pool.len() < CONTROL_POOL_SIZE {
        conn.idle_since = std::time::Instant::now();
        pool.push(conn);
    }
}

fn build_request(head: &RequestHead, client: &Client, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(512 + body.len());
    out.extend_from_slice(head.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(head.target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for h in &head.headers {
        let name = &*h.name;
        let skip = is_hop_by_hop(name)
            || ["content-length", "expect", CLIENT_IP_HEADER]
                .iter()
                .any(|n| n.eq_ignore_ascii_case(name));
        if !skip {
            write_header(&mut out, name, &h.value);
        }
    }
    if head.header("host").is_none() {
        write_header(&mut out, "Host", b"localhost");
    }
    write_header(
        &mut out,
        CLIENT_IP_HEADER,
        client.peer.ip().to_string().as_bytes(),
    );
    write_header(
        &mut out,
        "Content-Length",
        body.len().to_string().as_bytes(),
    );
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}
