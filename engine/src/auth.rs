//! Client authentication: where a proxy key may come from, and how it is taken out of the
//! request before anything is forwarded.
//!
//! GPT-Load v1 accepts the key in four places, in this order: the `key` query parameter,
//! `Authorization: Bearer`, `X-Api-Key`, `X-Goog-Api-Key`. The same extraction serves the admin
//! API, so it lives here, free of any shard state.

use std::borrow::Cow;

/// Headers that carry client credentials; never forwarded upstream.
pub const CLIENT_AUTH_HEADERS: [&str; 3] = ["authorization", "x-api-key", "x-goog-api-key"];

/// The proxy key a client presented, looked up in v1's order.
pub fn extract_proxy_key<'a>(
    query: &'a str,
    header: impl Fn(&str) -> Option<&'a [u8]>,
) -> Option<Cow<'a, str>> {
    if let Some(key) = query_param(query, "key").filter(|k| !k.is_empty()) {
        return Some(key);
    }
    // A non-UTF-8 Authorization is skipped, not fatal: the key may still be in the next place.
    if let Some(value) = header("authorization").and_then(|v| std::str::from_utf8(v).ok()) {
        let value = value.trim();
        if let Some(token) = strip_prefix_ignore_case(value, "bearer ") {
            let token = token.trim();
            if !token.is_empty() {
                return Some(Cow::Borrowed(token));
            }
        }
    }
    for name in ["x-api-key", "x-goog-api-key"] {
        if let Some(value) = header(name).and_then(|v| std::str::from_utf8(v).ok()) {
            let value = value.trim();
            if !value.is_empty() {
                return Some(Cow::Borrowed(value));
            }
        }
    }
    None
}

fn strip_prefix_ignore_case<'a>(value: &'a str, prefix: &str) -> Option<&'a str> {
    let head = value.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &value[prefix.len()..])
}

/// The first value of `name` in a raw query string, percent-decoded.
pub fn query_param<'a>(query: &'a str, name: &str) -> Option<Cow<'a, str>> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| percent_decode(v))
}

/// The query string without any `key` parameter (v1 strips the proxy key before forwarding and
/// logging). Other parameters keep their order and encoding.
pub fn strip_key_param(query: &str) -> Cow<'_, str> {
    if !query.split('&').any(is_key_pair) {
        return Cow::Borrowed(query);
    }
    let kept: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty() && !is_key_pair(p))
        .collect();
    Cow::Owned(kept.join("&"))
}

fn is_key_pair(pair: &str) -> bool {
    pair == "key" || pair.starts_with("key=")
}

/// Decodes `%XX` escapes and `+` (form encoding); invalid escapes are kept as they are.
pub fn percent_decode(text: &str) -> Cow<'_, str> {
    if !text.contains(['%', '+']) {
        return Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match (hex_value(bytes[i + 1]), hex_value(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push(h << 4 | l);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers<'a>(list: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<&'a [u8]> {
        move |name| {
            list.iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_bytes())
        }
    }

    #[test]
    fn v1_order_query_then_bearer_then_headers() {
        let all = [
            ("Authorization", "Bearer b"),
            ("X-Api-Key", "x"),
            ("X-Goog-Api-Key", "g"),
        ];
        assert_eq!(extract_proxy_key("key=q", headers(&all)).unwrap(), "q");
        assert_eq!(extract_proxy_key("a=1", headers(&all)).unwrap(), "b");
        assert_eq!(extract_proxy_key("", headers(&all[1..])).unwrap(), "x");
        assert_eq!(extract_proxy_key("", headers(&all[2..])).unwrap(), "g");
        assert_eq!(
            extract_proxy_key("", headers(&[("authorization", "bearer low")])).unwrap(),
            "low"
        );
        assert!(extract_proxy_key("", headers(&[("Authorization", "Basic abc")])).is_none());
        assert!(extract_proxy_key("key=", headers(&[])).is_none());
        let odd = |name: &str| match name {
            "authorization" => Some(&b"Bearer \xff\xfe"[..]),
            "x-api-key" => Some(&b"x"[..]),
            _ => None,
        };
        assert_eq!(
            extract_proxy_key("", odd).unwrap(),
            "x",
            "bad Authorization is skipped"
        );
    }

    #[test]
    fn key_param_is_stripped_and_others_kept() {
        assert_eq!(strip_key_param("a=1&key=s&b=2"), "a=1&b=2");
        assert_eq!(strip_key_param("key=s"), "");
        assert_eq!(strip_key_param("alt=sse&keyx=1"), "alt=sse&keyx=1");
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("sk%2Dab+c"), "sk-ab c");
        assert_eq!(percent_decode("bad%zz%"), "bad%zz%");
        assert_eq!(query_param("x=1&key=a%3Db", "key").unwrap(), "a=b");
    }
}
