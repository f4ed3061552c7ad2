//! What the mock remembers about each request, and how tests read it back.
//!
//! Recording happens before any answer is chosen, so a request that gets an error (forced status,
//! failing key, unknown route) is still in the log.

use std::borrow::Cow;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use tokio::sync::Notify;

use crate::Recording;
use crate::http::RequestView;

/// One request as the mock received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedRequest {
    pub method: String,
    /// The request target as sent: path and query.
    pub path: String,
    /// In arrival order, names lowercased, values as sent (invalid UTF-8 replaced).
    pub headers: Vec<(String, String)>,
    /// Decoded: a chunked body is stored without its framing.
    pub body: Vec<u8>,
}

impl RecordedRequest {
    fn from_view(request: &RequestView<'_>) -> RecordedRequest {
        RecordedRequest {
            method: request.method.to_owned(),
            path: request.path.to_owned(),
            headers: request
                .headers
                .iter()
                .map(|h| {
                    let value = String::from_utf8_lossy(h.value).into_owned();
                    (h.name.to_ascii_lowercase(), value)
                })
                .collect(),
            body: request.body.to_vec(),
        }
    }

    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every header called `name` (any case), in order.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON; `Value::Null` when it is empty or not JSON (see
    /// [`RecordedRequest::try_json`] for the reason).
    pub fn json(&self) -> serde_json::Value {
        self.try_json().unwrap_or(serde_json::Value::Null)
    }

    pub fn try_json(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn body_text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }

    /// The path without its query string.
    pub fn path_only(&self) -> &str {
        split_query(&self.path).0
    }

    /// The first query parameter called `name`, percent-decoded.
    pub fn query(&self, name: &str) -> Option<String> {
        query_param(&self.path, name).map(Cow::into_owned)
    }

    /// The provider key the request was authenticated with: `Authorization: Bearer …`,
    /// `x-api-key`, `x-goog-api-key` or `?key=`, tried in that order.
    pub fn upstream_key(&self) -> Option<String> {
        upstream_key(|name| self.header(name), &self.path).map(Cow::into_owned)
    }
}

/// The key a request carries, wherever each provider's clients put it. `header` looks a header
/// up by lowercase name.
pub(crate) fn upstream_key<'a>(
    header: impl Fn(&str) -> Option<&'a str>,
    path: &'a str,
) -> Option<Cow<'a, str>> {
    let bearer = header("authorization").and_then(|value| {
        let (scheme, token) = value.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    });
    bearer
        .or_else(|| header("x-api-key"))
        .or_else(|| header("x-goog-api-key"))
        .map(|key| Cow::Borrowed(key.trim()))
        .or_else(|| query_param(path, "key"))
        .filter(|key| !key.is_empty())
}

pub(crate) fn split_query(target: &str) -> (&str, &str) {
    target.split_once('?').unwrap_or((target, ""))
}

/// The first `name=value` pair of the query, value decoded the way Go's `url.Query` does.
pub(crate) fn query_param<'a>(target: &'a str, name: &str) -> Option<Cow<'a, str>> {
    split_query(target)
        .1
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| percent_decode(value))
}

/// `%XX` and `+` decoding; malformed escapes are kept as written.
fn percent_decode(value: &str) -> Cow<'_, str> {
    if !value.contains(['%', '+']) {
        return Cow::Borrowed(value);
    }
    let bytes = value.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (bytes[i], escaped) {
            (_, Some(byte)) => {
                decoded.push(byte);
                i += 3;
            }
            (b'+', None) => {
                decoded.push(b' ');
                i += 1;
            }
            (byte, None) => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&decoded).into_owned())
}

/// The requests received, shared between connection tasks and the test.
pub(crate) struct RequestLog {
    kept: Kept,
    /// Woken after every request, for `wait_for`.
    recorded: Notify,
}

enum Kept {
    /// The count is the vector's length, so `clear` resets both at once.
    Everything(Mutex<Vec<RecordedRequest>>),
    CountOnly(AtomicUsize),
}

impl RequestLog {
    pub(crate) fn new(recording: Recording) -> RequestLog {
        let kept = match recording {
            Recording::Everything => Kept::Everything(Mutex::default()),
            Recording::CountOnly => Kept::CountOnly(AtomicUsize::new(0)),
        };
        RequestLog {
            kept,
            recorded: Notify::new(),
        }
    }

    /// Remembers `request` and returns its index in the log.
    pub(crate) fn record(&self, request: &RequestView<'_>) -> usize {
        let index = match &self.kept {
            Kept::Everything(requests) => {
                let recorded = RecordedRequest::from_view(request);
                let mut requests = requests.lock().unwrap_or_else(PoisonError::into_inner);
                requests.push(recorded);
                requests.len() - 1
            }
            // Relaxed: the count orders nothing else; waiters re-read it after the notify.
            Kept::CountOnly(count) => count.fetch_add(1, Ordering::Relaxed),
        };
        self.recorded.notify_waiters();
        index
    }

    pub(crate) fn requests(&self) -> Vec<RecordedRequest> {
        match &self.kept {
            Kept::Everything(requests) => requests
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
            Kept::CountOnly(_) => Vec::new(),
        }
    }

    pub(crate) fn count(&self) -> usize {
        match &self.kept {
            Kept::Everything(requests) => requests
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .len(),
            Kept::CountOnly(count) => count.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn clear(&self) {
        match &self.kept {
            Kept::Everything(requests) => {
                requests
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clear();
            }
            Kept::CountOnly(count) => count.store(0, Ordering::Relaxed),
        }
    }

    pub(crate) async fn wait_for(&self, n: usize) {
        loop {
            // Registered before the check, so a request recorded in between still wakes us.
            let mut notified = pin!(self.recorded.notified());
            notified.as_mut().enable();
            if self.count() >= n {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)], path: &str) -> RecordedRequest {
        RecordedRequest {
            method: "POST".into(),
            path: path.into(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: Vec::new(),
        }
    }

    #[test]
    fn upstream_key_is_found_wherever_each_provider_puts_it() {
        let bearer = request(
            &[("authorization", "Bearer sk-openai")],
            "/v1/chat/completions",
        );
        assert_eq!(bearer.upstream_key().as_deref(), Some("sk-openai"));
        let anthropic = request(&[("x-api-key", "sk-ant")], "/v1/messages");
        assert_eq!(anthropic.upstream_key().as_deref(), Some("sk-ant"));
        let goog = request(&[("x-goog-api-key", "AIza1")], "/v1beta/models");
        assert_eq!(goog.upstream_key().as_deref(), Some("AIza1"));
        let query = request(&[], "/v1beta/models/g:generateContent?alt=sse&key=AIza%2B2");
        assert_eq!(query.upstream_key().as_deref(), Some("AIza+2"));
    }

    #[test]
    fn upstream_key_ignores_other_schemes_and_empty_values() {
        let basic = request(&[("authorization", "Basic dXNlcg==")], "/v1/models");
        assert_eq!(basic.upstream_key(), None);
        let empty = request(&[("x-api-key", " ")], "/v1/models?key=");
        assert_eq!(empty.upstream_key(), None);
        let lower = request(&[("authorization", "bearer  sk-1 ")], "/v1/models");
        assert_eq!(lower.upstream_key().as_deref(), Some("sk-1"));
    }

    #[test]
    fn percent_decoding_keeps_malformed_escapes() {
        assert_eq!(percent_decode("a%20b+c"), "a b c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn query_params_and_path() {
        let r = request(&[], "/v1beta/models/m:streamGenerateContent?alt=sse&flag");
        assert_eq!(r.path_only(), "/v1beta/models/m:streamGenerateContent");
        assert_eq!(r.query("alt").as_deref(), Some("sse"));
        assert_eq!(r.query("flag").as_deref(), Some(""));
        assert_eq!(r.query("key"), None);
    }
}
