//! Key validation for the control plane (v1 §2.6, §2.15): one validation request per call, sent
//! through this shard's upstream client, so a validation goes out exactly as proxied traffic
//! does: the group's outbound proxy, connect and header timeouts, TLS roots, pooled
//! connections and v1's redirect policy.
//!
//! The control plane calls `POST /__gpt_load/validate` on the public listener with the
//! per-process secret it generated at start (`EngineConfig::internal_secret`) in the
//! `X-Gpt-Load-Internal` header. Without that exact secret the request is routed like any other
//! non-proxy path and ends as the control plane's plain 404: a client can neither use the route
//! nor tell that it exists.
//!
//! What it does not do: decide what a verdict means for the key (the control plane counts the
//! failure or restores the key), or log a request row (v1 logs no validation).

use std::rc::Rc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::EngineConfig;
use crate::channel::KeyPlacement;
use crate::forward::{
    decode_for_message, encode_query_value, error_message, redact, upstream_query,
};
use crate::header_rules::{RuleContext, is_ruled, write_set_rules};
use crate::http::{RequestHead, write_content_length, write_header};
use crate::server::Shard;
use crate::server::respond::Client;
use crate::snapshot::Group;
use crate::upstream::{BodyReader, SendOptions, Upstream};

/// The internal route. Not under `/proxy` or `/api`, so it can never shadow a client route.
pub const VALIDATE_PATH: &str = "/__gpt_load/validate";
/// The header carrying the per-process secret.
pub const SECRET_HEADER: &str = "X-Gpt-Load-Internal";

/// Error bodies are read up to this size for their message (v1 keeps 2,048 bytes of it).
const ERROR_BODY_LIMIT: usize = 64 * 1024;
/// A successful answer is read up to this size so its connection can go back to the pool; a
/// longer one costs a closed connection, not memory.
const SUCCESS_BODY_LIMIT: usize = 1024 * 1024;
/// What `${CLIENT_IP}` is in a header rule on a validation request (v1).
const CLIENT_IP: &str = "127.0.0.1";

/// What the control plane asks: validate `key` against group `group_id` as the shard's current
/// snapshot has it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ValidateRequest {
    pub group_id: i64,
    /// The upstream key in clear. The caller sends it because invalid keys are not in the
    /// group's ring, which holds active keys only.
    pub key: String,
    /// Replaces the group's `test_model` when set.
    #[serde(default)]
    pub test_model: Option<String>,
    /// `key_validation_timeout_seconds`: bounds the whole exchange, body included.
    pub timeout_ms: u64,
}

/// The outcome: any 2xx is valid; otherwise `error` is v1's `[status N] message` (or the
/// transport error), with the key masked wherever it appeared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub valid: bool,
    /// The upstream's final status; 0 when none arrived.
    pub status: u16,
    pub error: String,
}

impl Verdict {
    fn invalid(status: u16, error: String) -> Self {
        Self {
            valid: false,
            status,
            error,
        }
    }
}

/// Whether `head` is the control plane's validation call: the exact route and the secret.
pub fn is_internal_call(config: &EngineConfig, head: &RequestHead) -> bool {
    let secret = config.internal_secret.as_bytes();
    !secret.is_empty()
        && head.method.as_ref() == "POST"
        && head.target.as_ref() == VALIDATE_PATH
        && head
            .header(SECRET_HEADER)
            .is_some_and(|sent| constant_time_eq(sent, secret))
}

/// Answers one validation call: 200 with a `Verdict`, or 400/404 when the call itself is wrong
/// (then nothing was sent upstream and the key's health must not change).
pub async fn serve(shard: &Rc<Shard>, client: &mut Client, body: &[u8]) {
    let request: ValidateRequest = match serde_json::from_slice(body) {
        Ok(request) => request,
        Err(e) => {
            let message = format!("validation request: {e}");
            let _ = client.send_error(400, "BAD_REQUEST", &message, &[]).await;
            return;
        }
    };
    let snapshot = shard.snapshot();
    let group = snapshot
        .groups
        .values()
        .find(|g| g.id == request.group_id && !g.is_aggregate)
        .cloned();
    let Some(group) = group else {
        let message = format!("group {} is not in the running snapshot", request.group_id);
        let _ = client.send_error(404, "NOT_FOUND", &message, &[]).await;
        return;
    };
    let verdict = validate(shard, &group, &request).await;
    // A struct of a bool, a number and a string always serialises.
    let answer = serde_json::to_vec(&verdict).unwrap_or_default();
    let _ = client.send_json(200, &answer, &[]).await;
}

/// Sends the validation request to one of the group's upstreams and judges the answer.
async fn validate(shard: &Shard, group: &Group, request: &ValidateRequest) -> Verdict {
    let Some(upstream) = group.upstreams.pick() else {
        let error = format!("no upstream URL configured for group {}", group.name);
        return Verdict::invalid(0, error);
    };
    let model = request
        .test_model
        .as_deref()
        .filter(|m| !m.trim().is_empty())
        .unwrap_or(&group.test_model);
    let bytes = build_request(group, upstream, &request.key, model);
    let timeout = Duration::from_millis(request.timeout_ms.max(1));
    let exchange = exchange(shard, group, upstream, bytes);
    let verdict = match crate::time::timeout(timeout, exchange).await {
        Ok(verdict) => verdict,
        Err(_) => Verdict::invalid(
            0,
            format!(
                "failed to send validation request: no complete answer within {}s (key_validation_timeout_seconds)",
                timeout.as_secs_f64()
            ),
        ),
    };
    // The key may come back raw (an upstream echoing it) or query-encoded (a URL in a
    // transport or redirect error).
    let encoded = encode_query_value(&request.key);
    Verdict {
        error: redact(&redact(&verdict.error, &request.key), &encoded),
        ..verdict
    }
}

/// send → read the body → judge; the connection goes back to the pool when it is clean.
async fn exchange(shard: &Shard, group: &Group, upstream: &Upstream, bytes: Vec<u8>) -> Verdict {
    let settings = &group.settings;
    let options = SendOptions {
        pool: &shard.pool,
        tls: &shard.tls,
        proxy: settings.proxy.as_deref(),
        was_head: false,
        connect_timeout: settings.connect_timeout,
        // The caller's bound covers the whole exchange and names itself when it fires.
        header_timeout: settings.response_header_timeout,
        idle_timeout: settings.idle_conn_timeout,
    };
    let (mut conn, head) = match crate::upstream::send(&options, upstream, bytes).await {
        Ok(pair) => pair,
        Err(e) => return Verdict::invalid(0, format!("failed to send validation request: {e}")),
    };
    let status = head.status;
    let valid = (200..300).contains(&status);
    let limit = if valid {
        SUCCESS_BODY_LIMIT
    } else {
        ERROR_BODY_LIMIT
    };
    let mut reader = BodyReader::new(&head);
    let mut body = Vec::new();
    let read = reader.read_to_end(&mut conn, &mut body, limit).await;
    if read.is_ok() && reader.reusable() {
        let (per_host, total) = (settings.max_idle_conns_per_host, settings.max_idle_conns);
        shard.pool.checkin(conn, per_host, total);
    }
    if valid {
        return Verdict {
            valid: true,
            status,
            error: String::new(),
        };
    }
    if let Err(e) = read {
        let error = format!("key is invalid (status {status}), but failed to read error body: {e}");
        return Verdict::invalid(status, error);
    }
    let message = error_message(&decode_for_message(&head, body));
    Verdict::invalid(status, format!("[status {status}] {message}"))
}

/// The validation request (v1 §2.6): the channel's path and one-"hi" body, the key injected
/// the channel's way, `Content-Type: application/json`, then the group's header rules with
/// `${CLIENT_IP}` = 127.0.0.1.
fn build_request(group: &Group, upstream: &Upstream, key: &str, test_model: &str) -> Vec<u8> {
    let channel = group.channel;
    let (path, query) = channel.validation_target(&group.validation_endpoint, test_model);
    let placement = channel.key_placement(&path);
    let query = upstream_query(&query, placement, key);
    // Serialising a `Value` cannot fail.
    let body = serde_json::to_vec(&channel.validation_body(test_model)).unwrap_or_default();
    let mut out = Vec::with_capacity(512 + body.len());
    out.extend_from_slice(b"POST ");
    out.extend_from_slice(upstream.base_path.as_bytes());
    out.extend_from_slice(path.as_bytes());
    if !query.is_empty() {
        out.push(b'?');
        out.extend_from_slice(query.as_bytes());
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    write_header(&mut out, "Host", upstream.authority.as_bytes());
    let bearer = format!("Bearer {key}");
    let auth = match placement {
        KeyPlacement::Bearer => Some(("Authorization", bearer.as_bytes())),
        KeyPlacement::XApiKey => Some(("x-api-key", key.as_bytes())),
        KeyPlacement::QueryKey => None,
    };
    let json: (&str, &[u8]) = ("Content-Type", b"application/json");
    let forced = channel
        .forced_headers()
        .iter()
        .map(|(n, v)| (*n, v.as_bytes()));
    let rules = &group.header_rules;
    for (name, value) in auth.into_iter().chain([json]).chain(forced) {
        if !is_ruled(rules, name) {
            write_header(&mut out, name, value);
        }
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let ctx = RuleContext {
        client_ip: CLIENT_IP,
        group_name: &group.name,
        api_key: key,
        now_ms,
    };
    write_set_rules(&mut out, rules, &ctx);
    write_content_length(&mut out, body.len());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&body);
    out
}

/// Compares without an early exit, so the time taken says nothing about the secret.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    a.len() == b.len() && std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::Channel;
    use crate::header_rules::HeaderRule;
    use crate::upstream::Upstreams;

    fn group(channel: Channel, endpoint: &str, rules: Vec<HeaderRule>) -> Group {
        Group {
            id: 1,
            name: "g".into(),
            channel,
            is_aggregate: false,
            upstreams: Upstreams::default(),
            keys: Default::default(),
            proxy_keys: Default::default(),
            settings: Default::default(),
            param_overrides: None,
            model_redirect: Default::default(),
            header_rules: rules.into(),
            aggregate: None,
            test_model: "tm".into(),
            validation_endpoint: endpoint.into(),
        }
    }

    fn request_text(group: &Group, key: &str) -> String {
        let upstream = Upstream::parse("https://api.example/base/", 1).expect("url");
        String::from_utf8(build_request(group, &upstream, key, &group.test_model)).expect("utf8")
    }

    #[test]
    fn openai_request_with_rules_applied_after_injection() {
        let rules = vec![
            HeaderRule {
                name: "Api-Key".into(),
                value: Some("${API_KEY}@${CLIENT_IP}/${GROUP_NAME}".into()),
            },
            HeaderRule {
                name: "Authorization".into(),
                value: None,
            },
        ];
        let text = request_text(&group(Channel::OpenAi, "", rules), "sk-1");
        let (head, body) = text.split_once("\r\n\r\n").expect("head");
        assert!(
            head.starts_with("POST /base/v1/chat/completions HTTP/1.1\r\nHost: api.example\r\n"),
            "{head}"
        );
        assert!(head.contains("\r\nApi-Key: sk-1@127.0.0.1/g"), "{head}");
        assert!(
            !head.to_ascii_lowercase().contains("authorization"),
            "{head}"
        );
        assert!(head.contains("Content-Type: application/json"), "{head}");
        assert!(
            head.ends_with(&format!("Content-Length: {}", body.len())),
            "{head}"
        );
        assert_eq!(
            body,
            r#"{"messages":[{"content":"hi","role":"user"}],"model":"tm"}"#
        );
    }

    #[test]
    fn anthropic_and_gemini_place_the_key_their_way() {
        let text = request_text(
            &group(Channel::Anthropic, "/v1/m?beta=true", vec![]),
            "sk-a",
        );
        assert!(
            text.starts_with("POST /base/v1/m?beta=true HTTP/1.1\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nx-api-key: sk-a\r\n"), "{text}");
        assert!(
            text.contains("\r\nanthropic-version: 2023-06-01\r\n"),
            "{text}"
        );
        let text = request_text(&group(Channel::Gemini, "/ignored?x=1", vec![]), "AIza+1");
        assert!(
            text.starts_with(
                "POST /base/v1beta/models/tm:generateContent?key=AIza%2B1 HTTP/1.1\r\n"
            ),
            "{text}"
        );
        assert!(
            !text.to_ascii_lowercase().contains("authorization"),
            "{text}"
        );
    }

    #[test]
    fn secret_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
