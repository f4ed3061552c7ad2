//! The proxy path of one `/proxy/{group}/…` request, in phases:
//! route → authenticate → rewrite → (pick key and upstream → inject → send → classify)* →
//! stream back → log. Each phase is a function named after it.

mod outcome;
mod respond;
mod route;
mod upstream_request;

use std::borrow::Cow;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::future::{Either, select};

use crate::auth::{CLIENT_AUTH_HEADERS, extract_proxy_key, strip_key_param};
use crate::channel::{BodyFacts, Channel, KeyPlacement};
use crate::events::{AttemptLog, AttemptText, Event, KeyHealth};
use crate::header_rules::{HeaderRule, RuleContext, expand, is_ruled};
use crate::http::{
    RequestHead, ResponseFraming, ResponseHead, is_hop_by_hop, push_hex, write_content_length,
    write_header, write_parsed_header, write_status_line,
};
use crate::keys::KeySlot;
use crate::rewrite::{
    RedirectOutcome, StrictMiss, decode_body, is_models_request, parse_content_encoding,
    redirect_model, rewrite_models_list,
};
use crate::route::proxy_target;
use crate::server::Shard;
use crate::server::conn::client_gone;
use crate::server::respond::{Client, ClientFraming, StreamError};
use crate::snapshot::Group;
use crate::upstream::{BodyReader, Conn, Upstream, UpstreamError};

use outcome::*;
use respond::*;
use route::*;
use upstream_request::*;

pub use outcome::{error_message, is_uncounted_error, mask_key, redact};
pub(crate) use respond::decode_for_message;
pub use respond::{copy_response_headers, respond_framing};
pub(crate) use upstream_request::{encode_query_value, upstream_query};

/// Everything known about the request once it is routed and authenticated.
struct ProxyRequest<'a> {
    /// Held to the end of the request: a reload never changes a request in flight. For a
    /// request through an aggregate, the member chosen for it.
    group: Arc<Group>,
    /// The aggregate group the request came through, if any.
    parent: Option<Arc<Group>>,
    /// The client's address as logged and offered to header rules.
    source_ip: String,
    head: &'a RequestHead,
    /// The path after the group name.
    path: String,
    /// The query without the proxy key.
    query: String,
    body: Vec<u8>,
    is_stream: bool,
    model: String,
    started: Instant,
    request_id: String,
}

/// Serves one proxy request on `client`.
pub async fn proxy(shard: &Rc<Shard>, client: &mut Client, head: &RequestHead, body: Vec<u8>) {
    let started = Instant::now();
    let request_id = request_id(shard, head);
    let Some(request) =
        route_and_authenticate(shard, client, head, body, started, &request_id).await
    else {
        return;
    };
    let max = shard.config.max_concurrent_requests;
    let in_flight = &shard.shared.proxy_in_flight;
    if max > 0 && in_flight.fetch_add(1, Ordering::Relaxed) >= max {
        in_flight.fetch_sub(1, Ordering::Relaxed);
        let extra = [("Retry-After", "1"), ("X-Request-Id", request_id.as_str())];
        let _ = client
            .send_error(
                429,
                "TOO_MANY_REQUESTS",
                "Too many concurrent requests",
                &extra,
            )
            .await;
        return;
    }
    forward(shard, client, request).await;
    if max > 0 {
        in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How one attempt ended.
enum Attempt {
    /// The response went to the client (success or a non-failover status).
    Delivered,
    /// A failover status or transport error; the next attempt may follow.
    Failed {
        status: u16,
        message: String,
        body: Option<Vec<u8>>,
    },
    /// The client went away; nothing more to do.
    ClientGone,
}

/// The attempt loop: up to `max_retries + 1` attempts, each with a fresh key and upstream.
async fn forward(shard: &Rc<Shard>, client: &mut Client, request: ProxyRequest<'_>) {
    let settings = &request.group.settings;
    let attempts = settings.max_retries + 1;
    for attempt in 1..=attempts {
        let (Some(key), Some(upstream)) =
            (request.group.keys.pick(), request.group.upstreams.pick())
        else {
            return no_keys(shard, client, &request).await;
        };
        let outcome = try_upstream(shard, client, &request, key, upstream).await;
        match outcome {
            Attempt::Delivered | Attempt::ClientGone => return,
            Attempt::Failed {
                status,
                message,
                body,
            } => {
                let message = redact(&message, key.value());
                // The body may go back to the client: it must not carry our upstream key.
                let body = body.map(|b| redact_bytes(b, key.value()));
                penalize(shard, &request, key, &message);
                // When this failure left no active key, it is the answer: the client learns
                // what the upstream said rather than a bare "no keys" (v1 answers 503, #300).
                let is_last = attempt == attempts || !request.group.keys.has_active();
                log_attempt(
                    shard,
                    &request,
                    Some((key, upstream)),
                    status,
                    &message,
                    is_last,
                );
                if is_last {
                    return send_final_error(client, &request, status, &message, body).await;
                }
            }
        }
    }
}

/// One attempt: send, classify, and either deliver the response or report the failure.
async fn try_upstream(
    shard: &Rc<Shard>,
    client: &mut Client,
    request: &ProxyRequest<'_>,
    key: &KeySlot,
    upstream: &Upstream,
) -> Attempt {
    let settings = &request.group.settings;
    let bytes = build_upstream_request(request, key, upstream);
    let header_timeout = if request.is_stream {
        settings.response_header_timeout
    } else {
        settings
            .response_header_timeout
            .min(remaining(request.started, settings.request_timeout))
    };
    let was_head = request.head.method.as_ref() == "HEAD";
    let exchange = send(shard, upstream, settings, bytes, was_head, header_timeout);
    let result = match select(
        std::pin::pin!(exchange),
        std::pin::pin!(client_gone(&client.stream)),
    )
    .await
    {
        Either::Left((result, _)) => result,
        Either::Right(_) => {
            log_attempt(
                shard,
                request,
                Some((key, upstream)),
                499,
                "client closed the connection",
                true,
            );
            client.keep_alive = false;
            return Attempt::ClientGone;
        }
    };
    let (mut conn, head) = match result {
        Ok(pair) => pair,
        Err(e) => {
            return Attempt::Failed {
                status: 500,
                message: e.to_string(),
                body: None,
            };
        }
    };
    if settings.failover_codes.contains(head.status) {
        let mut reader = BodyReader::new(&head);
        let mut body = Vec::new();
        let read = reader.read_to_end(&mut conn, &mut body, ERROR_BODY_LIMIT);
        // A stalled error body must not hold the attempt past the header timeout.
        let read = crate::time::timeout(header_timeout, read).await;
        if matches!(read, Ok(Ok(()))) && reader.reusable() {
            let (per_host, total) = settings.idle_limits(request.is_stream);
            shard.pool.checkin(conn, per_host, total);
        }
        let body = decode_for_message(&head, body);
        let message = error_message(&body);
        return Attempt::Failed {
            status: head.status,
            message,
            body: Some(body),
        };
    }
    deliver(shard, client, request, key, upstream, conn, head).await
}

/// Sends the request through the group's proxy rule on a pooled or new connection, follows
/// redirects, and reads the final response head (`upstream::send`).
async fn send(
    shard: &Shard,
    upstream: &Upstream,
    settings: &crate::snapshot::GroupSettings,
    bytes: Vec<u8>,
    was_head: bool,
    header_timeout: Duration,
) -> Result<(Conn, ResponseHead), UpstreamError> {
    let options = crate::upstream::SendOptions {
        pool: &shard.pool,
        tls: &shard.tls,
        proxy: settings.proxy.as_deref(),
        was_head,
        connect_timeout: settings.connect_timeout,
        header_timeout,
        idle_timeout: settings.idle_conn_timeout,
    };
    crate::upstream::send(&options, upstream, bytes).await
}

pub use crate::upstream::exchange_head;

fn remaining(started: Instant, total: Duration) -> Duration {
    total.saturating_sub(started.elapsed())
}

/// The client's `X-Request-Id` when it is sane, else a new one unique in this process.
fn request_id(shard: &Shard, head: &RequestHead) -> String {
    if let Some(id) = head
        .header("x-request-id")
        .filter(|id| !id.is_empty() && id.len() <= 128 && id.iter().all(|b| b.is_ascii_graphic()))
    {
        return String::from_utf8_lossy(id).into_owned();
    }
    let seq = shard.shared.request_seq.fetch_add(1, Ordering::Relaxed);
    // `{boot:012x}{seq:08x}` without `fmt`, which cost more than the rest of routing.
    let mut id = Vec::with_capacity(20);
    push_hex(&mut id, shard.config.boot_id & 0xffff_ffff_ffff, 12);
    push_hex(&mut id, seq, 8);
    // Hex digits only, so never the empty fallback.
    String::from_utf8(id).unwrap_or_default()
}
