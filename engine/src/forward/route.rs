//! route → authenticate → rewrite: find the group (and the aggregate member), check the
//! proxy key, detect streaming, apply param overrides and the model redirect.

use super::*;

/// Model redirect (v1 §2.8), after param overrides: the JSON body's `model`, or Gemini's
/// native path. In strict mode a model without a rule is refused.
pub(super) fn redirect_model_phase(
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

/// route → authenticate → rewrite: the group, the proxy key check, the body rewrites.
pub(super) async fn route_and_authenticate<'a>(
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
        source_ip: crate::client_ip::ip_text(crate::client_ip::client_ip(
            client.peer.ip(),
            head.header("x-forwarded-for"),
            head.header("x-real-ip"),
            &shard.config.trusted_proxies,
        )),
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

/// Stream detection on the client's body, then param overrides; returns the body to send, the
/// stream flag, the model name (after overrides, as v1 logs it) and the parsed JSON body. The
/// body is parsed into a document only when overrides or redirect rules may rewrite it;
/// otherwise its two fields are read in place.
pub(super) fn rewrite(
    group: &Group,
    head: &RequestHead,
    path: &str,
    query: &str,
    body: Vec<u8>,
) -> (Vec<u8>, bool, String, Option<serde_json::Value>) {
    let accept = head.header("accept");
    let rewrites = group.param_overrides.is_some() || !group.model_redirect.is_empty();
    if !rewrites && let Some(facts) = BodyFacts::peek(&body) {
        let is_stream = group.channel.is_stream(path, query, accept, &facts);
        let model = group
            .channel
            .model(path, &facts)
            .unwrap_or_default()
            .to_string();
        return (body, is_stream, model, None);
    }
    let mut json: Option<serde_json::Value> = match body.first() {
        Some(b'{') => serde_json::from_slice(&body).ok(),
        _ => None,
    };
    let is_stream =
        group
            .channel
            .is_stream(path, query, accept, &BodyFacts::of_value(json.as_ref()));
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
    let facts = BodyFacts::of_value(json.as_ref());
    let model = group
        .channel
        .model(path, &facts)
        .unwrap_or_default()
        .to_string();
    (body, is_stream, model, json)
}
