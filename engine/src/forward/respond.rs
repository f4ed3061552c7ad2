//! stream back: the response to the client as it arrives, model lists rewritten, and the
//! answers for attempts that found no key or all failed.

use super::*;

/// Error bodies of failed attempts are read up to this size to find the message (v1 keeps
/// 2,048 bytes of it; the rest only costs memory).
pub(super) const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// Largest model list read for rewriting (OpenAI's is ~100 KB; 32 MiB is far beyond any).
pub(super) const MODELS_BODY_LIMIT: usize = 32 * 1024 * 1024;

/// Streams a response to the client as it arrives and logs the final attempt.
pub(super) async fn deliver(
    shard: &Rc<Shard>,
    client: &mut Client,
    request: &ProxyRequest<'_>,
    key: &KeySlot,
    upstream: &Upstream,
    mut conn: Conn,
    head: ResponseHead,
) -> Attempt {
    if !request.is_stream
        && (200..300).contains(&head.status)
        && is_models_request(&request.head.method, &request.path)
    {
        let models = deliver_models_list(shard, client, request, key, upstream, conn, head);
        return Box::pin(models).await;
    }
    let settings = &request.group.settings;
    let mut out = Vec::with_capacity(512 + conn.buf.len());
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
    let deadline = (!request.is_stream).then(|| request.started + settings.request_timeout);
    // Non-stream: the whole request's deadline. Stream: a bound on the silence between
    // chunks, so a stalled upstream cannot hold the client forever (v1 has none).
    let wait = || match deadline {
        Some(d) => Some((
            d.saturating_duration_since(Instant::now()),
            "request_timeout reached while reading the body",
        )),
        None => settings
            .stream_idle_timeout
            .map(|idle| (idle, "stream_idle_timeout: the upstream went silent")),
    };
    let failure = match client
        .send_streamed(out, framing, &mut reader, &mut conn, wait)
        .await
    {
        Ok(()) => None,
        Err(StreamError::Client) => Some((499, "client closed the connection".to_string())),
        Err(StreamError::Upstream(e)) => Some((head.status, e.to_string())),
    };
    match failure {
        None => {
            if reader.reusable() {
                let (per_host, total) = settings.idle_limits(request.is_stream);
                shard.pool.checkin(conn, per_host, total);
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
                &redact(&message, key.value()),
                true,
            );
        }
    }
    Attempt::Delivered
}

/// Model lists are read whole, decoded and rewritten per the group's redirect rules (v1 §2.8),
/// then sent as JSON with status 200; a body that is not a list (or cannot be decoded) goes
/// through as the upstream sent it.
pub(super) async fn deliver_models_list(
    shard: &Rc<Shard>,
    client: &mut Client,
    request: &ProxyRequest<'_>,
    key: &KeySlot,
    upstream: &Upstream,
    mut conn: Conn,
    head: ResponseHead,
) -> Attempt {
    let settings = &request.group.settings;
    let mut reader = BodyReader::new(&head);
    let mut raw = Vec::new();
    let wait = remaining(request.started, settings.request_timeout);
    let read = crate::time::timeout(
        wait,
        reader.read_to_end(&mut conn, &mut raw, MODELS_BODY_LIMIT),
    )
    .await
    .unwrap_or(Err(UpstreamError::Timeout(
        "request_timeout reached while reading the body",
    )));
    let extra = [("X-Request-Id", request.request_id.as_str())];
    if let Err(e) = read {
        let message = redact(&e.to_string(), key.value());
        log_attempt(shard, request, Some((key, upstream)), 502, &message, true);
        let _ = client
            .send_error(502, "UPSTREAM_ERROR", &message, &extra)
            .await;
        return Attempt::Delivered;
    }
    if reader.reusable() {
        let (per_host, total) = settings.idle_limits(request.is_stream);
        shard.pool.checkin(conn, per_host, total);
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
                write_header(out, "Content-Length", h.value);
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
        let name = h.name;
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
        write_parsed_header(out, name, h.value);
    }
    if is_stream {
        for (name, value) in SSE_HEADERS {
            write_parsed_header(out, name, value);
        }
    }
}

/// Decodes a body per its `Content-Encoding` (gzip, deflate, br, zstd), bounded by `limit`.
pub(super) fn decode(head: &ResponseHead, body: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    let encoding = parse_content_encoding(head.header("content-encoding"))?;
    decode_body(body, encoding, limit)
}

/// Error bodies are read for their message; a compressed one is decoded first (v1 does), and
/// kept as it came when it cannot be.
pub(crate) fn decode_for_message(head: &ResponseHead, body: Vec<u8>) -> Vec<u8> {
    decode(head, &body, ERROR_BODY_LIMIT * 16).unwrap_or(body)
}

/// After the last failed attempt: the upstream's JSON body verbatim with its status, otherwise
/// v1's `UPSTREAM_ERROR` envelope.
pub(super) async fn send_final_error(
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

pub(super) async fn no_keys(shard: &Shard, client: &mut Client, request: &ProxyRequest<'_>) {
    let message = "No active API keys available for this group";
    log_attempt(shard, request, None, 503, message, true);
    let extra = [("X-Request-Id", request.request_id.as_str())];
    let _ = client
        .send_error(503, "NO_KEYS_AVAILABLE", message, &extra)
        .await;
}
