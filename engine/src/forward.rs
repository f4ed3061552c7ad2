//! The proxy path of one `/proxy/{group}/…` request, in phases:
//! route → authenticate → rewrite → (pick key and upstream → inject → send → classify)* →
//! stream back → log. Each phase is a function named after it.

use std::borrow::Cow;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::future::{Either, select};

use crate::auth::{CLIENT_AUTH_HEADERS, extract_proxy_key, strip_key_param};
use crate::channel::{Channel, KeyPlacement};
use crate::events::{AttemptLog, Event, KeyHealth};
use crate::header_rules::{HeaderRule, RuleContext, expand, is_ruled};
use crate::http::{
    RequestHead, ResponseFraming, ResponseHead, is_hop_by_hop, write_header, write_status_line,
};
use crate::keys::KeySlot;
use crate::rewrite::{
    RedirectOutcome, StrictMiss, decode_body, is_models_request, parse_content_encoding,
    redirect_model, rewrite_models_list,
};
use crate::route::proxy_target;
use crate::server::Shard;
use crate::server::conn::client_gone;
use crate::server::respond::{Client, ClientFraming};
use crate::snapshot::Group;
use crate::upstream::{BodyReader, Conn, Upstream, UpstreamError};

/// Error bodies of failed attempts are read up to this size to find the message (v1 keeps
/// 2,048 bytes of it; the rest only costs memory).
const ERROR_BODY_LIMIT: usize = 64 * 1024;
/// Largest model list read for rewriting (OpenAI's is ~100 KB; 32 MiB is far beyond any).
const MODELS_BODY_LIMIT: usize = 32 * 1024 * 1024;
/// Longest error message stored or returned (v1).
const ERROR_MESSAGE_LIMIT: usize = 2048;
/// Longest `request_path` / `upstream_addr` stored (v1's column sizes).
const LOGGED_PATH_LIMIT: usize = 500;
/// Longest request body stored when body logging is on (v1).
const LOGGED_BODY_LIMIT: usize = 65_000;
/// Error texts that do not count against a key (v1, #159: quota and context-length messages).
const UNCOUNTED_ERRORS: [&str; 2] = [
    "resource has been exhausted",
    "please reduce the length of the messages",
];

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

/// route → authenticate → rewrite: the group, the proxy key check, the body rewrites.
async fn route_and_authenticate<'a>(
    shard: &Shard,
    client: &mut Client,
    head: &'a RequestHead,
    body: Vec<u8>,
    started: Instant,
    request_id: &str,
) -> Option<ProxyRequest<'a>> {
    let target = proxy_target(&head.target)?;
    let snapshot = shard.snapshot();
    let extra = [("X-Request-Id", request_id)];
    let Some(group) = snapshot.group(target.group).cloned() else {
        let message = format!("Group '{}' not found", target.group);
        let _ = client.send_error(404, "NOT_FOUND", &message, &extra).await;
        return None;
    };
    let key = extract_proxy_key(target.query, |name| head.header(name));
    if !key.is_some_and(|k| group.accepts(&k, &snapshot)) {
        let _ = client
            .send_error(401, "UNAUTHORIZED", "Authentication failed", &extra)
            .await;
        return None;
    }
    let query = strip_key_param(target.query).into_owned();
    let path = target.path.to_string();
    let (group, parent) = match group.aggregate.as_ref().map(|a| a.pick().cloned()) {
        None => (group, None),
        Some(Some(member)) => (member, Some(group)),
        Some(None) => {
            let message = "No available sub-groups";
            let _ = client
                .send_error(503, "NO_KEYS_AVAILABLE", message, &extra)
                .await;
            return None;
        }
    };
    let (body, is_stream, model, json) = rewrite(&group, head, &path, &query, body);
    let mut request = ProxyRequest {
        group,
        parent,
        source_ip: crate::client_ip::client_ip(
            client.peer.ip(),
            head.header("x-forwarded-for"),
            head.header("x-real-ip"),
            &shard.config.trusted_proxies,
        )
        .to_string(),
        head,
        path,
        query,
        body,
        is_stream,
        model,
        started,
        request_id: request_id.to_string(),
    };
    match redirect_model_phase(&mut request, json) {
        Ok(()) => Some(request),
        Err(miss) => {
            let message = miss.to_string();
            log_attempt(shard, &request, None, 400, &message, true);
            let _ = client
                .send_error(400, "BAD_REQUEST", &message, &extra)
                .await;
            None
        }
    }
}

/// Model redirect (v1 §2.8), after param overrides: the JSON body's `model`, or Gemini's
/// native path. In strict mode a model without a rule is refused.
fn redirect_model_phase(
    request: &mut ProxyRequest<'_>,
    mut json: Option<serde_json::Value>,
) -> Result<(), StrictMiss> {
    let rules = &request.group.model_redirect;
    if rules.is_empty() {
        return Ok(());
    }
    let (outcome, new_path) =
        redirect_model(request.group.channel, &request.path, json.as_mut(), rules)?;
    if let Some(path) = new_path {
        request.path = path;
    } else if let (RedirectOutcome::Rewritten { .. }, Some(json)) = (&outcome, &json)
        && let Ok(bytes) = serde_json::to_vec(json)
    {
        request.body = bytes;
    }
    Ok(())
}

/// Stream detection on the client's body, then param overrides; returns the body to send, the
/// stream flag, the model name (after overrides, as v1 logs it) and the parsed JSON body.
fn rewrite(
    group: &Group,
    head: &RequestHead,
    path: &str,
    query: &str,
    body: Vec<u8>,
) -> (Vec<u8>, bool, String, Option<serde_json::Value>) {
    let mut json: Option<serde_json::Value> = match body.first() {
        Some(b'{') => serde_json::from_slice(&body).ok(),
        _ => None,
    };
    let is_stream = group
        .channel
        .is_stream(path, query, head.header("accept"), json.as_ref());
    let mut body = body;
    if let (Some(overrides), Some(serde_json::Value::Object(map))) =
        (&group.param_overrides, json.as_mut())
    {
        for (k, v) in overrides {
            map.insert(k.clone(), v.clone());
        }
        if let Ok(bytes) = serde_json::to_vec(&json) {
            body = bytes;
        }
    }
    let model = group
        .channel
        .model(path, json.as_ref())
        .unwrap_or_default()
        .to_string();
    (body, is_stream, model, json)
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
                let message = redact(&message, &key.value);
                // The body may go back to the client: it must not carry our upstream key.
                let body = body.map(|b| redact_bytes(b, &key.value));
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
    key: &Arc<KeySlot>,
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
        let read = monoio::time::timeout(header_timeout, read).await;
        if matches!(read, Ok(Ok(()))) && reader.reusable() {
            shard.pool.checkin(
                conn,
                settings.max_idle_conns_per_host,
                settings.max_idle_conns,
            );
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

/// Streams a response to the client as it arrives and logs the final attempt.
async fn deliver(
    shard: &Rc<Shard>,
    client: &mut Client,
    request: &ProxyRequest<'_>,
    key: &Arc<KeySlot>,
    upstream: &Upstream,
    mut conn: Conn,
    head: ResponseHead,
) -> Attempt {
    if !request.is_stream
        && (200..300).contains(&head.status)
        && is_models_request(&request.head.method, &request.path)
    {
        return deliver_models_list(shard, client, request, key, upstream, conn, head).await;
    }
    let settings = &request.group.settings;
    let mut out = Vec::with_capacity(512);
    write_status_line(&mut out, head.status);
    copy_response_headers(
        &mut out,
        &head,
        request.is_stream,
        client.cors_origin.is_some(),
    );
    write_header(&mut out, "X-Request-Id", request.request_id.as_bytes());
    let framing = respond_framing(client, &mut out, &head);
    let mut reader = BodyReader::new(&head);
    let mut failure: Option<(u16, String)> = None;
    if client.write(out).await.is_err() {
        failure = Some((499, "client closed the connection".into()));
    }
    let deadline = (!request.is_stream).then(|| request.started + settings.request_timeout);
    let mut piece = Vec::with_capacity(crate::upstream::conn::READ_CHUNK);
    while failure.is_none() {
        piece.clear();
        let next = reader.next(&mut conn, &mut piece);
        // Non-stream: the whole request's deadline. Stream: a bound on the silence between
        // chunks, so a stalled upstream cannot hold the client forever (v1 has none).
        let (wait, what) = match deadline {
            Some(d) => (
                Some(d.saturating_duration_since(Instant::now())),
                "request_timeout reached while reading the body",
            ),
            None => (
                settings.stream_idle_timeout,
                "stream_idle_timeout: the upstream went silent",
            ),
        };
        let next = match wait {
            Some(wait) => match monoio::time::timeout(wait, next).await {
                Ok(r) => r,
                Err(_) => Err(UpstreamError::Timeout(what)),
            },
            None => next.await,
        };
        match next {
            Ok(true) => {
                if client.send_piece(framing, &piece).await.is_err() {
                    failure = Some((499, "client closed the connection".into()));
                }
            }
            Ok(false) => break,
            Err(e) => failure = Some((head.status, e.to_string())),
        }
    }
    match failure {
        None => {
            if client.finish_body(framing).await.is_err() {
                client.keep_alive = false;
            }
            if reader.reusable() {
                shard.pool.checkin(
                    conn,
                    settings.max_idle_conns_per_host,
                    settings.max_idle_conns,
                );
            }
            log_attempt(shard, request, Some((key, upstream)), head.status, "", true);
        }
        Some((status, message)) => {
            // The response has begun; the only honest signal left is to close the connection.
            client.keep_alive = false;
            log_attempt(
                shard,
                request,
                Some((key, upstream)),
                status,
                &redact(&message, &key.value),
                true,
            );
        }
    }
    Attempt::Delivered
}

/// Adds the framing headers for relaying `head`'s body and ends the head. A body-less response
/// (HEAD, 204, 304) keeps the upstream's own `Content-Length`, if any, untouched.
pub fn respond_framing(
    client: &mut Client,
    out: &mut Vec<u8>,
    head: &ResponseHead,
) -> ClientFraming {
    match head.framing {
        ResponseFraming::Empty => {
            if let Some(h) = head
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            {
                write_header(out, "Content-Length", &h.value);
            }
            client.finish_head(out, None);
            ClientFraming::Length(0)
        }
        ResponseFraming::Length(n) => client.choose_framing(out, Some(n)),
        _ => client.choose_framing(out, None),
    }
}

/// Copies upstream response headers minus hop-by-hop and framing ones; forces v1's SSE headers
/// on stream requests.
pub fn copy_response_headers(
    out: &mut Vec<u8>,
    head: &ResponseHead,
    is_stream: bool,
    cors_active: bool,
) {
    const SSE_HEADERS: [(&str, &[u8]); 3] = [
        ("Content-Type", b"text/event-stream"),
        ("Cache-Control", b"no-cache"),
        ("X-Accel-Buffering", b"no"),
    ];
    let connection_listed = connection_listed(&head.headers);
    for h in &head.headers {
        let name = &*h.name;
        if is_hop_by_hop(name)
            || name.eq_ignore_ascii_case("content-length")
            || connection_listed
                .iter()
                .any(|c| c.eq_ignore_ascii_case(name))
            || (is_stream
                && SSE_HEADERS
                    .iter()
                    .any(|(n, _)| n.eq_ignore_ascii_case(name)))
            || name.eq_ignore_ascii_case("x-request-id")
            || crate::cors::is_ours(name, cors_active)
        {
            continue;
        }
        write_header(out, name, &h.value);
    }
    if is_stream {
        for (name, value) in SSE_HEADERS {
            write_header(out, name, value);
        }
    }
}

fn connection_listed(headers: &[crate::http::Header]) -> Vec<String> {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .flat_map(|h| {
            crate::http::connection_tokens(&h.value)
                .map(|t| String::from_utf8_lossy(t).trim().to_string())
                .collect::<Vec<_>>()
        })
        .collect()
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

/// The upstream request: method, base path + client path, query (+ key for Gemini), client
/// headers minus credentials and hop-by-hop ones, the key injected the channel's way.
fn build_upstream_request(
    request: &ProxyRequest<'_>,
    key: &KeySlot,
    upstream: &Upstream,
) -> Vec<u8> {
    let head = request.head;
    let channel = request.group.channel;
    let placement = channel.key_placement(&request.path);
    let mut out = Vec::with_capacity(1024 + request.body.len());
    out.extend_from_slice(head.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(upstream.base_path.as_bytes());
    out.extend_from_slice(if request.path.is_empty() {
        b"/"
    } else {
        request.path.as_bytes()
    });
    let query = upstream_query(&request.query, placement, &key.value);
    if !query.is_empty() {
        out.push(b'?');
        out.extend_from_slice(query.as_bytes());
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    write_header(&mut out, "Host", upstream.authority.as_bytes());
    let rules = &request.group.header_rules;
    copy_request_headers(&mut out, head, channel, rules);
    let bearer;
    let injected: &[(&str, &[u8])] = match placement {
        KeyPlacement::Bearer => {
            bearer = format!("Bearer {}", key.value);
            &[("Authorization", bearer.as_bytes())]
        }
        KeyPlacement::XApiKey => &[("x-api-key", key.value.as_bytes())],
        KeyPlacement::QueryKey => &[],
    };
    let forced = channel
        .forced_headers()
        .iter()
        .map(|(n, v)| (*n, v.as_bytes()));
    for (name, value) in injected.iter().copied().chain(forced) {
        if !is_ruled(rules, name) {
            write_header(&mut out, name, value);
        }
    }
    apply_header_rules(&mut out, request, &key.value);
    if !request.body.is_empty()
        || !matches!(head.method.as_ref(), "GET" | "HEAD" | "DELETE" | "OPTIONS")
    {
        write_header(
            &mut out,
            "Content-Length",
            request.body.len().to_string().as_bytes(),
        );
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&request.body);
    out
}

pub(crate) fn upstream_query<'q>(
    query: &'q str,
    placement: KeyPlacement,
    key: &str,
) -> Cow<'q, str> {
    if placement != KeyPlacement::QueryKey {
        return Cow::Borrowed(query);
    }
    let encoded = encode_query_value(key);
    if query.is_empty() {
        Cow::Owned(format!("key={encoded}"))
    } else {
        Cow::Owned(format!("{query}&key={encoded}"))
    }
}

pub(crate) fn encode_query_value(value: &str) -> Cow<'_, str> {
    let safe = |b: u8| b.is_ascii_alphanumeric() || b"-._~".contains(&b);
    if value.bytes().all(safe) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() * 3);
    for b in value.bytes() {
        if safe(b) {
            out.push(b as char)
        } else {
            out.push_str(&format!("%{b:02X}"))
        }
    }
    Cow::Owned(out)
}

/// Writes the group's `set` rules with their variables expanded (v1 §2.7); `remove` rules
/// took effect by the ruled headers being skipped above.
fn apply_header_rules(out: &mut Vec<u8>, request: &ProxyRequest<'_>, api_key: &str) {
    let rules = &request.group.header_rules;
    if rules.is_empty() {
        return;
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let ctx = RuleContext {
        client_ip: &request.source_ip,
        group_name: &request.group.name,
        api_key,
        now_ms,
    };
    for rule in rules.iter() {
        let framing = ["host", "content-length", "transfer-encoding"];
        if framing.iter().any(|f| rule.targets(f)) {
            continue;
        }
        if let Some(template) = &rule.value {
            write_header(out, &rule.name, expand(template, &ctx).as_bytes());
        }
    }
}

fn copy_request_headers(
    out: &mut Vec<u8>,
    head: &RequestHead,
    channel: Channel,
    rules: &[HeaderRule],
) {
    let connection_listed = connection_listed(&head.headers);
    for h in &head.headers {
        let name = &*h.name;
        let skip = is_hop_by_hop(name)
            || ["host", "content-length", "expect"]
                .iter()
                .any(|n| n.eq_ignore_ascii_case(name))
            || CLIENT_AUTH_HEADERS
                .iter()
                .any(|n| n.eq_ignore_ascii_case(name))
            || channel
                .forced_headers()
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(name))
            || connection_listed
                .iter()
                .any(|c| c.eq_ignore_ascii_case(name))
            || is_ruled(rules, name);
        if !skip {
            write_header(out, name, &h.value);
        }
    }
}

/// Counts a failure against the key (unless the error is one v1 does not count) and tells the
/// control plane when its health changed.
fn penalize(shard: &Shard, request: &ProxyRequest<'_>, key: &KeySlot, message: &str) {
    if is_uncounted_error(message) {
        return;
    }
    let outcome = key.record_failure(request.group.settings.blacklist_threshold);
    shard.events.emit(Event::Key(KeyHealth {
        key_id: key.id,
        group_id: key.group_id,
        failure_count: outcome.failure_count,
        blacklisted: outcome.blacklisted,
        active: key.is_active(),
    }));
}

/// Whether a failure with this message is one v1 does not count against the key (#159); the
/// same rule applies to failed validations.
pub fn is_uncounted_error(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    UNCOUNTED_ERRORS.iter().any(|e| lower.contains(e))
}

/// After the last failed attempt: the upstream's JSON body verbatim with its status, otherwise
/// v1's `UPSTREAM_ERROR` envelope.
async fn send_final_error(
    client: &mut Client,
    request: &ProxyRequest<'_>,
    status: u16,
    message: &str,
    body: Option<Vec<u8>>,
) {
    let extra = [("X-Request-Id", request.request_id.as_str())];
    if let Some(body) = body.filter(|b| serde_json::from_slice::<serde_json::Value>(b).is_ok()) {
        let _ = client.send_json(status, &body, &extra).await;
        return;
    }
    let _ = client
        .send_error(status, "UPSTREAM_ERROR", message, &extra)
        .await;
}

async fn no_keys(shard: &Shard, client: &mut Client, request: &ProxyRequest<'_>) {
    let message = "No active API keys available for this group";
    log_attempt(shard, request, None, 503, message, true);
    let extra = [("X-Request-Id", request.request_id.as_str())];
    let _ = client
        .send_error(503, "NO_KEYS_AVAILABLE", message, &extra)
        .await;
}

/// Emits the log record of one attempt.
fn log_attempt(
    shard: &Shard,
    request: &ProxyRequest<'_>,
    used: Option<(&Arc<KeySlot>, &Upstream)>,
    status: u16,
    error: &str,
    is_final: bool,
) {
    let group = &request.group;
    let body_logging = group.settings.enable_request_body_logging;
    let request_path = logged_target(&request.head.target);
    let upstream_addr = used
        .map(|(_, u)| {
            let q = if request.query.is_empty() {
                String::new()
            } else {
                format!("?{}", request.query)
            };
            truncate(
                &format!("{}{}{}", u.url.trim_end_matches('/'), request.path, q),
                LOGGED_PATH_LIMIT,
            )
        })
        .unwrap_or_default();
    let log = AttemptLog {
        timestamp: chrono::Utc::now(),
        group_id: group.id,
        group_name: group.name.clone(),
        parent_group_id: request.parent.as_ref().map_or(0, |p| p.id),
        parent_group_name: request.parent.as_ref().map(|p| p.name.clone()),
        key_id: used.map(|(k, _)| k.id).unwrap_or(0),
        key_hash: used.map(|(k, _)| k.hash.clone()),
        key_value: used.map(|(k, _)| Arc::from(&*k.value)),
        model: request.model.clone(),
        is_success: error.is_empty() && status < 400,
        source_ip: request.source_ip.clone(),
        status_code: status,
        request_path,
        duration_ms: request.started.elapsed().as_millis() as u64,
        error_message: truncate(error, ERROR_MESSAGE_LIMIT),
        user_agent: if body_logging {
            header_text(request.head, "user-agent")
        } else {
            String::new()
        },
        is_final,
        upstream_addr,
        is_stream: request.is_stream,
        request_body: if body_logging {
            truncate(&String::from_utf8_lossy(&request.body), LOGGED_BODY_LIMIT)
        } else {
            String::new()
        },
        request_id: request.request_id.clone(),
    };
    shard.events.emit(Event::Attempt(Box::new(log)));
}

/// The client's target with the proxy key removed, as v1 logs it.
fn logged_target(target: &str) -> String {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let query = strip_key_param(query);
    let full = if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{query}")
    };
    truncate(&full, LOGGED_PATH_LIMIT)
}

fn header_text(head: &RequestHead, name: &str) -> String {
    head.header(name)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default()
}

/// The upstream's error message, in v1's order: `error.message`, `error_msg`, `error` (string),
/// `message`, else the raw text.
pub fn error_message(body: &[u8]) -> String {
    if let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) {
        let candidates = [
            json.pointer("/error/message"),
            json.get("error_msg"),
            json.get("error").filter(|e| e.is_string()),
            json.get("message"),
        ];
        if let Some(text) = candidates.into_iter().flatten().find_map(|v| v.as_str()) {
            return truncate(text, ERROR_MESSAGE_LIMIT);
        }
    }
    truncate(String::from_utf8_lossy(body).trim(), ERROR_MESSAGE_LIMIT)
}

/// Decodes a body per its `Content-Encoding` (gzip, deflate, br, zstd), bounded by `limit`.
fn decode(head: &ResponseHead, body: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    let encoding = parse_content_encoding(head.header("content-encoding"))?;
    decode_body(body, encoding, limit)
}

/// Error bodies are read for their message; a compressed one is decoded first (v1 does), and
/// kept as it came when it cannot be.
pub(crate) fn decode_for_message(head: &ResponseHead, body: Vec<u8>) -> Vec<u8> {
    decode(head, &body, ERROR_BODY_LIMIT * 16).unwrap_or(body)
}

/// Model lists are read whole, decoded and rewritten per the group's redirect rules (v1 §2.8),
/// then sent as JSON with status 200; a body that is not a list (or cannot be decoded) goes
/// through as the upstream sent it.
async fn deliver_models_list(
    shard: &Rc<Shard>,
    client: &mut Client,
    request: &ProxyRequest<'_>,
    key: &Arc<KeySlot>,
    upstream: &Upstream,
    mut conn: Conn,
    head: ResponseHead,
) -> Attempt {
    let settings = &request.group.settings;
    let mut reader = BodyReader::new(&head);
    let mut raw = Vec::new();
    let wait = remaining(request.started, settings.request_timeout);
    let read = monoio::time::timeout(
        wait,
        reader.read_to_end(&mut conn, &mut raw, MODELS_BODY_LIMIT),
    )
    .await
    .unwrap_or(Err(UpstreamError::Timeout(
        "request_timeout reached while reading the body",
    )));
    let extra = [("X-Request-Id", request.request_id.as_str())];
    if let Err(e) = read {
        let message = redact(&e.to_string(), &key.value);
        log_attempt(shard, request, Some((key, upstream)), 502, &message, true);
        let _ = client
            .send_error(502, "UPSTREAM_ERROR", &message, &extra)
            .await;
        return Attempt::Delivered;
    }
    if reader.reusable() {
        shard.pool.checkin(
            conn,
            settings.max_idle_conns_per_host,
            settings.max_idle_conns,
        );
    }
    let rewritten = decode(&head, &raw, MODELS_BODY_LIMIT)
        .ok()
        .and_then(|body| rewrite_models_list(&body, &request.group.model_redirect, &request.query));
    let sent = match rewritten {
        Some(body) => client.send_json(200, &body, &extra).await,
        None => {
            let mut out = Vec::with_capacity(512 + raw.len());
            write_status_line(&mut out, head.status);
            copy_response_headers(&mut out, &head, false, client.cors_origin.is_some());
            write_header(&mut out, "X-Request-Id", request.request_id.as_bytes());
            client.finish_head(&mut out, Some(raw.len() as u64));
            out.extend_from_slice(&raw);
            client.write(out).await
        }
    };
    let (status, error) = match sent {
        Ok(()) => (head.status, ""),
        Err(_) => (499, "client closed the connection"),
    };
    log_attempt(shard, request, Some((key, upstream)), status, error, true);
    Attempt::Delivered
}

/// Replaces every occurrence of `key` with its masked form (`sk-a****wxyz`).
pub fn redact(text: &str, key: &str) -> String {
    if key.len() < 4 || !text.contains(key) {
        return text.to_string();
    }
    text.replace(key, &mask_key(key))
}

/// `redact` for a raw body; bodies without the key are returned as they are.
fn redact_bytes(body: Vec<u8>, key: &str) -> Vec<u8> {
    if key.len() < 4 || memchr::memmem::find(&body, key.as_bytes()).is_none() {
        return body;
    }
    redact(&String::from_utf8_lossy(&body), key).into_bytes()
}

/// v1's mask: first four and last four characters around `****` (shorter keys fully masked).
pub fn mask_key(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 8 {
        return "****".into();
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}****{tail}")
}

fn truncate(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_string();
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

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
    format!(
        "{:012x}{:08x}",
        shard.config.boot_id & 0xffff_ffff_ffff,
        seq
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_message_order() {
        assert_eq!(
            error_message(br#"{"error":{"message":"a"},"message":"b"}"#),
            "a"
        );
        assert_eq!(error_message(br#"{"error_msg":"c","message":"b"}"#), "c");
        assert_eq!(error_message(br#"{"error":"d"}"#), "d");
        assert_eq!(error_message(br#"{"message":"e"}"#), "e");
        assert_eq!(error_message(b" plain text "), "plain text");
        assert_eq!(error_message(&vec![b'x'; 5000]).len(), 2048);
    }

    #[test]
    fn keys_are_masked_in_texts() {
        assert_eq!(mask_key("sk-abcdefghwxyz"), "sk-a****wxyz");
        assert_eq!(
            redact("bad key sk-abcdefghwxyz here", "sk-abcdefghwxyz"),
            "bad key sk-a****wxyz here"
        );
        assert_eq!(mask_key("short"), "****");
    }

    #[test]
    fn gemini_key_goes_into_the_query() {
        assert_eq!(
            upstream_query("alt=sse", KeyPlacement::QueryKey, "AIza+1"),
            "alt=sse&key=AIza%2B1"
        );
        assert_eq!(upstream_query("", KeyPlacement::QueryKey, "k"), "key=k");
        assert_eq!(upstream_query("a=1", KeyPlacement::Bearer, "k"), "a=1");
    }
}
