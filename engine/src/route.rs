//! Routing: which requests the shard serves itself (`/proxy/{group}/{path}`) and which it relays
//! to the control plane (everything else).

/// A request target split for the proxy: the group name, the path after it and the raw query.
#[derive(Debug, PartialEq, Eq)]
pub struct ProxyTarget<'a> {
    pub group: &'a str,
    /// The rest of the path, starting with `/` (or empty when the URL ends at the group name).
    pub path: &'a str,
    /// The query string without the `?`, possibly empty.
    pub query: &'a str,
}

/// Splits `/proxy/{group}/{rest}?{query}`; `None` when the target is not a proxy route.
///
/// Runs several times a request (reading, dispatching, routing), so it searches bytes with
/// `memchr` rather than `str::find(char)`, whose setup cost more than this whole function now.
/// Both separators are ASCII, so every index found is a char boundary.
pub fn proxy_target(target: &str) -> Option<ProxyTarget<'_>> {
    let rest = target.strip_prefix("/proxy/")?;
    let (rest, query) = match memchr::memchr(b'?', rest.as_bytes()) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, ""),
    };
    let (group, path) = match memchr::memchr(b'/', rest.as_bytes()) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if group.is_empty() {
        return None;
    }
    Some(ProxyTarget { group, path, query })
}

/// Whether `target` is a proxy route: `proxy_target(target).is_some()` without splitting it.
pub fn is_proxy_target(target: &str) -> bool {
    target
        .strip_prefix("/proxy/")
        .is_some_and(|rest| !matches!(rest.as_bytes().first(), None | Some(b'?' | b'/')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_proxy_target_agrees_with_proxy_target() {
        for target in [
            "/proxy/g",
            "/proxy/g/v1/chat",
            "/proxy/g?x=1",
            "/proxy/",
            "/proxy//v1",
            "/proxy/?g",
            "/proxy",
            "/api/groups",
            "/proxyg/v1",
            "/proxy/grüppe/v1",
        ] {
            assert_eq!(
                is_proxy_target(target),
                proxy_target(target).is_some(),
                "{target}"
            );
        }
    }

    #[test]
    fn splits_group_path_and_query() {
        let t = proxy_target("/proxy/openai/v1/chat/completions?a=1&key=x").unwrap();
        assert_eq!(t.group, "openai");
        assert_eq!(t.path, "/v1/chat/completions");
        assert_eq!(t.query, "a=1&key=x");
        let t = proxy_target("/proxy/g").unwrap();
        assert_eq!((t.group, t.path, t.query), ("g", "", ""));
        let t = proxy_target("/proxy/g?a=/b?c").unwrap();
        assert_eq!((t.group, t.path, t.query), ("g", "", "a=/b?c"));
        let t = proxy_target("/proxy/grüppe/v1/ä?q=ö").unwrap();
        assert_eq!((t.group, t.path, t.query), ("grüppe", "/v1/ä", "q=ö"));
    }

    #[test]
    fn other_paths_are_not_proxy_routes() {
        for target in [
            "/",
            "/api/groups",
            "/proxy/",
            "/proxy",
            "/proxyx/a/b",
            "/proxy//v1",
            "/proxy/?a=b",
            "/api?x=/proxy/g",
        ] {
            assert!(proxy_target(target).is_none(), "{target}");
        }
    }
}
