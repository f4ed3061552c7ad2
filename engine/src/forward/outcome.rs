//! classify → log: what an attempt did to its key, the log record of each attempt, and the
//! texts (upstream error messages, masked keys) that go into them.

use super::*;

/// Longest error message stored or returned (v1).
pub(super) const ERROR_MESSAGE_LIMIT: usize = 2048;

/// Longest `request_path` / `upstream_addr` stored (v1's column sizes).
pub(super) const LOGGED_PATH_LIMIT: usize = 500;

/// Longest request body stored when body logging is on (v1).
pub(super) const LOGGED_BODY_LIMIT: usize = 65_000;

/// Error texts that do not count against a key (v1, #159: quota and context-length messages).
pub(super) const UNCOUNTED_ERRORS: [&str; 2] = [
    "resource has been exhausted",
    "please reduce the length of the messages",
];

/// Counts a failure against the key (unless the error is one v1 does not count) and tells the
/// control plane when its health changed.
pub(super) fn penalize(shard: &Shard, request: &ProxyRequest<'_>, key: &KeySlot, message: &str) {
    if is_uncounted_error(message) {
        return;
    }
    let outcome = key.record_failure(request.group.settings.blacklist_threshold);
    shard.events.emit(Event::Key(KeyHealth {
        key_id: key.id(),
        group_id: request.group.id,
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

/// Emits the log record of one attempt.
pub(super) fn log_attempt(
    shard: &Shard,
    request: &ProxyRequest<'_>,
    used: Option<(&KeySlot, &Upstream)>,
    status: u16,
    error: &str,
    is_final: bool,
) {
    let group = &request.group;
    let body_logging = group.settings.enable_request_body_logging;
    let request_path = logged_target(&request.head.target);
    let upstream_addr = used
        .map(|(_, u)| {
            let base = u.url.trim_end_matches('/');
            let mut addr =
                String::with_capacity(base.len() + request.path.len() + 1 + request.query.len());
            addr.push_str(base);
            addr.push_str(&request.path);
            if !request.query.is_empty() {
                addr.push('?');
                addr.push_str(&request.query);
            }
            truncate_in_place(addr, LOGGED_PATH_LIMIT)
        })
        .unwrap_or_default();
    let log = AttemptLog {
        timestamp: chrono::Utc::now(),
        group_id: group.id,
        group_name: group.name.clone(),
        parent_group_id: request.parent.as_ref().map_or(0, |p| p.id),
        parent_group_name: request.parent.as_ref().map(|p| p.name.clone()),
        key: used.map(|(k, _)| k.clone()),
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
pub(super) fn logged_target(target: &str) -> String {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let query = strip_key_param(query);
    let mut full = String::with_capacity(path.len() + 1 + query.len());
    full.push_str(path);
    if !query.is_empty() {
        full.push('?');
        full.push_str(&query);
    }
    truncate_in_place(full, LOGGED_PATH_LIMIT)
}

pub(super) fn header_text(head: &RequestHead, name: &str) -> String {
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

/// Replaces every occurrence of `key` with its masked form (`sk-a****wxyz`).
pub fn redact(text: &str, key: &str) -> String {
    if key.len() < 4 || !text.contains(key) {
        return text.to_string();
    }
    text.replace(key, &mask_key(key))
}

/// `redact` for a raw body; bodies without the key are returned as they are.
pub(super) fn redact_bytes(body: Vec<u8>, key: &str) -> Vec<u8> {
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

/// `text` cut to at most `limit` bytes on a character boundary, without copying.
pub(super) fn truncate_in_place(mut text: String, limit: usize) -> String {
    if text.len() > limit {
        let mut end = limit;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

pub(super) fn truncate(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_string();
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncate_in_place("héllo".into(), 2), "h");
        assert_eq!(truncate_in_place("héllo".into(), 3), "hé");
        assert_eq!(truncate_in_place("abc".into(), 10), "abc");
        assert_eq!(truncate("héllo", 2), "h");
    }

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
}
