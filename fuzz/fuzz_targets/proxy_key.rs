//! Proxy-key extraction and query rewriting (`engine::auth`) on arbitrary queries and headers.
//!
//! Input: `query NUL authorization NUL x-api-key NUL x-goog-api-key`. A missing field is an
//! absent header, an empty one a header with an empty value; header values may be any bytes,
//! as obs-text lets them be on the wire. The query is taken as UTF-8 with invalid bytes
//! replaced, since the request parser only hands over UTF-8 targets.

#![no_main]

use std::borrow::Cow;

use engine::auth::{extract_proxy_key, percent_decode, query_param, strip_key_param};
use libfuzzer_sys::fuzz_target;

/// The credential headers, in the order their values follow the query in the input.
const HEADER_NAMES: [&str; 3] = ["authorization", "x-api-key", "x-goog-api-key"];

fuzz_target!(|data: &[u8]| {
    let mut fields = data.split(|&b| b == 0);
    let query = String::from_utf8_lossy(fields.next().unwrap_or_default());
    let headers: Vec<(&str, &[u8])> = HEADER_NAMES.into_iter().zip(fields).collect();

    check_extract(&query, &headers);
    check_strip(&query);
    check_decode(&query);
    for (_, value) in &headers {
        check_decode(&String::from_utf8_lossy(value));
    }
});

/// A key is never empty; a non-empty `key` parameter wins; any other key is a piece of one of
/// the credential headers, never something made up.
fn check_extract(query: &str, headers: &[(&str, &[u8])]) {
    let lookup = |name: &str| headers.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
    let key = extract_proxy_key(query, lookup);
    if let Some(key) = &key {
        assert!(!key.is_empty(), "{query:?} {headers:?}: empty key");
    }
    let from_query = query_param(query, "key").filter(|k| !k.is_empty());
    if let Some(expected) = from_query {
        assert_eq!(
            key.as_deref(),
            Some(&*expected),
            "{query:?}: query key lost"
        );
    } else if let Some(key) = &key {
        let in_a_header = headers
            .iter()
            .any(|(_, value)| contains(value, key.as_bytes()));
        assert!(
            in_a_header,
            "{query:?} {headers:?}: key {key:?} from nowhere"
        );
    }
}

/// The stripped query keeps every other non-empty parameter in order and no `key` parameter,
/// so the upstream and the request log never see the proxy key.
fn check_strip(query: &str) {
    let stripped = strip_key_param(query);
    for pair in stripped.split('&') {
        assert!(
            pair != "key" && !pair.starts_with("key="),
            "{query:?} stripped to {stripped:?}"
        );
    }
    assert!(
        query_param(&stripped, "key").is_none(),
        "{query:?} stripped to {stripped:?} still has a key"
    );
    let has_key = query
        .split('&')
        .any(|p| p == "key" || p.starts_with("key="));
    if !has_key {
        assert!(
            matches!(stripped, Cow::Borrowed(s) if s == query),
            "{query:?} has no key but became {stripped:?}"
        );
        return;
    }
    let kept: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty() && *p != "key" && !p.starts_with("key="))
        .collect();
    assert_eq!(
        stripped,
        kept.join("&"),
        "{query:?}: other parameters changed"
    );
}

/// Decoding never grows the text (each escape or byte yields at most one byte, and a replacement
/// character stands for at least one three-byte escape) and leaves plain text alone.
fn check_decode(text: &str) {
    let decoded = percent_decode(text);
    assert!(
        decoded.len() <= text.len(),
        "{text:?} grew to {decoded:?} when decoded"
    );
    if !text.contains(['%', '+']) {
        assert!(
            matches!(decoded, Cow::Borrowed(s) if s == text),
            "{text:?} has nothing to decode but became {decoded:?}"
        );
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}
