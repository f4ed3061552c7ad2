//! inject: the request sent upstream: path and query on the upstream base, client headers
//! minus credentials and hop-by-hop ones, the key the channel's way, then the header rules.

use super::*;

/// The upstream request: method, base path + client path, query (+ key for Gemini), client
/// headers minus credentials and hop-by-hop ones, the key injected the channel's way.
pub(super) fn build_upstream_request(
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
    let query = upstream_query(&request.query, placement, key.value());
    if !query.is_empty() {
        out.push(b'?');
        out.extend_from_slice(query.as_bytes());
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    write_header(&mut out, "Host", upstream.authority.as_bytes());
    let rules = &request.group.header_rules;
    copy_request_headers(&mut out, head, channel, rules);
    let mut bearer;
    let injected: &[(&str, &[u8])] = match placement {
        KeyPlacement::Bearer => {
            // Two copies into one allocation; `format!` and `concat` cost several times more.
            bearer = Vec::with_capacity(7 + key.value().len());
            bearer.extend_from_slice(b"Bearer ");
            bearer.extend_from_slice(key.value().as_bytes());
            &[("Authorization", bearer.as_slice())]
        }
        KeyPlacement::XApiKey => &[("x-api-key", key.value().as_bytes())],
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
    apply_header_rules(&mut out, request, key.value());
    if !request.body.is_empty()
        || !matches!(head.method.as_ref(), "GET" | "HEAD" | "DELETE" | "OPTIONS")
    {
        write_content_length(&mut out, request.body.len());
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
pub(super) fn apply_header_rules(out: &mut Vec<u8>, request: &ProxyRequest<'_>, api_key: &str) {
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

pub(super) fn copy_request_headers(
    out: &mut Vec<u8>,
    head: &RequestHead,
    channel: Channel,
    rules: &[HeaderRule],
) {
    let connection_listed = connection_listed(&head.headers);
    for h in &head.headers {
        let name = h.name;
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
            write_parsed_header(out, name, h.value);
        }
    }
}

pub(super) fn connection_listed(headers: &crate::http::Headers) -> Vec<String> {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .flat_map(|h| {
            crate::http::connection_tokens(h.value)
                .map(|t| String::from_utf8_lossy(t).trim().to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
