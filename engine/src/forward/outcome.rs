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
    let (path, query) = logged_target_parts(&request.head.target);
    let user_agent = match body_logging.then(|| request.head.header("user-agent")) {
        Some(Some(value)) => String::from_utf8_lossy(value),
        _ => Cow::Borrowed(""),
    };
    let body = if body_logging {
        String::from_utf8_lossy(&request.body)
    } else {
        Cow::Borrowed("")
    };
    let base = used.map_or("", |(_, u)| u.url.trim_end_matches('/'));
    let (upstream_path, upstream_sep, upstream_query) = match used {
        Some(_) if !request.query.is_empty() => {
            (request.path.as_str(), "?", request.query.as_str())
        }
        Some(_) => (request.path.as_str(), "", ""),
        None => ("", "", ""),
    };

    let sep = if query.is_empty() { "" } else { "?" };
    let text = AttemptText::new([
        (&[&request.model], usize::MAX),
        (&[&request.source_ip], usize::MAX),
        (&[path, sep, &query], LOGGED_PATH_LIMIT),
        (&[error], ERROR_MESSAGE_LIMIT),
        (&[&user_agent], usize::MAX),
        (
            &[base, upstream_path, upstream_sep, upstream_query],
            LOGGED_PATH_LIMIT,
        ),
        (&[&body], LOGGED_BODY_LIMIT),
        (&[&request.request_id], usize::MAX),
    ]);

    let log = AttemptLog {
        timestamp: chrono::Utc::now(),
        group_id: group.id,
        group_name: group.name.clone(),
        parent_group_id: request.parent.as_ref().map_or(0, |p| p.id),
        parent_group_name: request.parent.as_ref().map(|p| p.name.clone()),
        key: used.map(|(k, _)| k.clone()),
        is_success: error.is_empty() && status < 400,
        status_code: status,
        duration_ms: request.started.elapsed().as_millis() as u64,
        is_final,
        is_stream: request.is_stream,
        text,
    };
    shard.events.emit(Event::Attempt(Box::new(log)));
}

/// The client's target with the proxy key removed, as v1 logs it: the path and the query
/// without the key (to be joined with `?` when not empty).
fn logged_target_parts(target: &str) -> (&str, Cow<'_, str>) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    (path, strip_key_param(query))
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

/// `text` cut to at most `limit` bytes on a character boundary.
pub(super) fn truncate(text: &str, limit: usize) -> String {
    text[..text.floor_char_boundary(limit)].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("héllo", 3), "hé");
        assert_eq!(truncate("abc", 10), "abc");
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
