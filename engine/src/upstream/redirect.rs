//! Redirects as v1 follows them (Go's `http.Client` plus v1.4.8's credential stripping): from a
//! 3xx response and the request that caused it, the next request. Pure functions; the loop that
//! sends them is `send.rs`.
//!
//! - 301, 302, 303: a method other than GET or HEAD becomes GET without a body (Go's rule);
//!   307, 308: method and body are kept.
//! - A 3xx without `Location` is the response itself, as in Go.
//! - Leaving the host (another host name; the port does not count, as in v1) drops the
//!   credential headers and the `key` query parameter, so an upstream can never send our keys
//!   elsewhere. Once dropped they stay dropped for the rest of the chain.
//! - No `Referer` is added (Go adds one, which would carry a Gemini `?key=` along).

use super::UpstreamError;
use super::target::{Scheme, Upstream};
use crate::http::{ResponseHead, write_header};

/// Redirects followed per attempt before it fails (Go's and v1's limit).
pub const MAX_REDIRECTS: usize = 10;

/// Headers that carry upstream credentials (v1.4.8's list), matched case-insensitively.
const CREDENTIAL_HEADERS: [&str; 5] = [
    "authorization",
    "x-api-key",
    "api-key",
    "x-goog-api-key",
    "x-auth-token",
];

/// The request to send after a redirect, and where to send it (addresses not resolved yet).
#[derive(Debug)]
pub struct Redirect {
    pub target: Upstream,
    /// Origin-form HTTP/1.1 request, head and body.
    pub request: Vec<u8>,
    pub was_head: bool,
}

/// The next request if `head` is a redirect to follow; `None` when it is a final response.
/// `request` is the origin-form request that got `head` from `current`.
pub fn next_request(
    current: &Upstream,
    request: &[u8],
    head: &ResponseHead,
) -> Result<Option<Redirect>, UpstreamError> {
    if !matches!(head.status, 301 | 302 | 303 | 307 | 308) {
        return Ok(None);
    }
    let Some(location) = head.header("location").filter(|l| !l.is_empty()) else {
        return Ok(None);
    };
    let sent = SentRequest::parse(request)?;
    let location = String::from_utf8_lossy(location);
    let fail = |why: String| UpstreamError::Redirect(format!("redirect to '{location}': {why}"));
    let (scheme, authority, path) =
        resolve_location(current.scheme, &current.authority, sent.target, &location)
            .map_err(fail)?;
    let scheme_name = if scheme == Scheme::Https {
        "https"
    } else {
        "http"
    };
    let target = Upstream::parse(&format!("{scheme_name}://{authority}"), 1).map_err(fail)?;
    let same_host = target.host.eq_ignore_ascii_case(&current.host);
    let keep_body = matches!(head.status, 307 | 308);
    let method = if keep_body || matches!(sent.method, "GET" | "HEAD") {
        sent.method
    } else {
        "GET"
    };
    let path = if same_host { path } else { strip_key(&path) };
    let mut out = Vec::with_capacity(request.len() + 64);
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    write_header(&mut out, "Host", target.authority.as_bytes());
    for (name, value) in &sent.headers {
        let framing = ["host", "content-length", "transfer-encoding"];
        let dropped = name.eq_ignore_ascii_case("host")
            || (!keep_body && framing.iter().any(|f| name.eq_ignore_ascii_case(f)))
            || (!same_host
                && CREDENTIAL_HEADERS
                    .iter()
                    .any(|c| name.eq_ignore_ascii_case(c)));
        if !dropped {
            write_header(&mut out, name, value);
        }
    }
    out.extend_from_slice(b"\r\n");
    if keep_body {
        out.extend_from_slice(sent.body);
    }
    Ok(Some(Redirect {
        target,
        request: out,
        was_head: method == "HEAD",
    }))
}

/// The error after more than `MAX_REDIRECTS`, in Go's words. The query is left out: it may hold
/// a key.
pub fn too_many(target: &Upstream, request: &[u8]) -> UpstreamError {
    let (method, path) = SentRequest::parse(request)
        .map(|r| {
            (
                r.method.to_string(),
                r.target.split('?').next().unwrap_or("").to_string(),
            )
        })
        .unwrap_or_default();
    let scheme = if target.scheme == Scheme::Https {
        "https"
    } else {
        "http"
    };
    UpstreamError::Redirect(format!(
        "{method} \"{scheme}://{}{path}\": stopped after {MAX_REDIRECTS} redirects",
        target.authority
    ))
}

/// Our own serialized request, read back.
struct SentRequest<'a> {
    method: &'a str,
    target: &'a str,
    headers: Vec<(&'a str, &'a [u8])>,
    body: &'a [u8],
}

impl<'a> SentRequest<'a> {
    fn parse(bytes: &'a [u8]) -> Result<SentRequest<'a>, UpstreamError> {
        let invalid =
            || UpstreamError::Protocol("cannot re-read the request to redirect it".into());
        let lines = memchr::memchr_iter(b'\n', bytes).count();
        let mut slots = vec![httparse::EMPTY_HEADER; lines];
        let mut parsed = httparse::Request::new(&mut slots);
        let Ok(httparse::Status::Complete(head_len)) = parsed.parse(bytes) else {
            return Err(invalid());
        };
        let (Some(method), Some(target)) = (parsed.method, parsed.path) else {
            return Err(invalid());
        };
        let headers = parsed.headers.iter().map(|h| (h.name, h.value)).collect();
        Ok(SentRequest {
            method,
            target,
            headers,
            body: &bytes[head_len..],
        })
    }
}

/// Resolves `location` against `scheme://authority` + `current` (an origin-form target) as RFC
/// 3986 §5 does; returns the scheme, the authority and the origin-form path with query.
pub fn resolve_location(
    scheme: Scheme,
    authority: &str,
    current: &str,
    location: &str,
) -> Result<(Scheme, String, String), String> {
    let location = location.trim();
    if location.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err("control character in Location".into());
    }
    let location = location.split('#').next().unwrap_or("");
    let (scheme, rest) = match split_scheme(location) {
        Some((name, rest)) => match name.to_ascii_lowercase().as_str() {
            "http" => (Scheme::Http, rest),
            "https" => (Scheme::Https, rest),
            _ => return Err(format!("unsupported protocol scheme \"{name}\"")),
        },
        None => (scheme, location),
    };
    if let Some(net) = rest.strip_prefix("//") {
        let end = net.find(['/', '?']).unwrap_or(net.len());
        let (authority, path) = net.split_at(end);
        if authority.is_empty() {
            return Err("no host in Location".into());
        }
        return Ok((scheme, authority.to_string(), origin_form(path)));
    }
    if rest.len() < location.len() {
        return Err("an absolute Location needs //host".into());
    }
    let (current_path, current_query) = current.split_once('?').unwrap_or((current, ""));
    let target = match rest.as_bytes().first() {
        None if current_query.is_empty() => current_path.to_string(),
        None => format!("{current_path}?{current_query}"),
        Some(b'/') => rest.to_string(),
        Some(b'?') => format!("{current_path}{rest}"),
        Some(_) => {
            let dir = &current_path[..current_path.rfind('/').map_or(0, |i| i + 1)];
            format!("{}{rest}", if dir.is_empty() { "/" } else { dir })
        }
    };
    Ok((scheme, authority.to_string(), origin_form(&target)))
}

/// `scheme:` at the start of a URL reference (RFC 3986 §3.1), if there is one.
fn split_scheme(url: &str) -> Option<(&str, &str)> {
    let colon = url.find(':')?;
    let name = &url[..colon];
    let valid = name.bytes().next()?.is_ascii_alphabetic()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    valid.then(|| (name, &url[colon + 1..]))
}

/// Path with dot segments removed, `/` when empty, unsafe bytes percent-encoded; the query as is
/// (also encoded).
fn origin_form(target: &str) -> String {
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let path = if path.is_empty() { "/" } else { path };
    let mut out = encode_unsafe(&remove_dot_segments(path));
    if let Some(q) = query {
        out.push('?');
        out.push_str(&encode_unsafe(q));
    }
    out
}

fn remove_dot_segments(path: &str) -> String {
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let mut out: Vec<&str> = Vec::with_capacity(segments.len());
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *segment {
            "." => {}
            ".." => {
                out.pop();
            }
            s => {
                out.push(s);
                continue;
            }
        }
        // `a/.` and `a/..` name a directory: keep the trailing slash.
        if last {
            out.push("");
        }
    }
    format!("/{}", out.join("/"))
}

/// Percent-encodes spaces, non-ASCII bytes and the few characters a request line cannot hold.
fn encode_unsafe(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b <= b' ' || b >= 0x7f || b"\"<>\\^`{|}".contains(&b) {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push(b as char);
        }
    }
    out
}

/// Removes every `key` query parameter (the Gemini key we injected) from a path with query.
fn strip_key(path: &str) -> String {
    match path.split_once('?') {
        Some((p, q)) => {
            let q = crate::auth::strip_key_param(q);
            if q.is_empty() {
                p.to_string()
            } else {
                format!("{p}?{q}")
            }
        }
        None => path.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::parse_response_head;

    fn head(status: u16, location: Option<&str>) -> ResponseHead {
        let mut raw = format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\n");
        if let Some(l) = location {
            raw.push_str(&format!("Location: {l}\r\n"));
        }
        raw.push_str("\r\n");
        parse_response_head(raw.as_bytes(), false, 65536)
            .unwrap()
            .unwrap()
    }

    const POST: &[u8] = b"POST /v1/chat?alt=sse&key=AIza1 HTTP/1.1\r\nHost: a.example\r\n\
        Authorization: Bearer sk-1\r\nX-Goog-Api-Key: g\r\napi-key: a\r\nx-auth-token: t\r\n\
        X-API-KEY: k\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";

    fn follow(status: u16, location: &str) -> Redirect {
        let current = Upstream::parse("https://a.example", 1).unwrap();
        next_request(&current, POST, &head(status, Some(location)))
            .unwrap()
            .unwrap()
    }

    fn text(r: &Redirect) -> String {
        String::from_utf8(r.request.clone()).unwrap()
    }

    #[test]
    fn only_3xx_with_location_redirect() {
        let current = Upstream::parse("http://a", 1).unwrap();
        for (status, location) in [(200, Some("/x")), (304, Some("/x")), (302, None)] {
            assert!(
                next_request(&current, POST, &head(status, location))
                    .unwrap()
                    .is_none(),
                "{status}"
            );
        }
    }

    #[test]
    fn temporary_and_permanent_keep_method_and_body() {
        for status in [307, 308] {
            let r = follow(status, "/v2/chat");
            let t = text(&r);
            assert!(
                t.starts_with("POST /v2/chat HTTP/1.1\r\nHost: a.example\r\n"),
                "{t}"
            );
            assert!(
                t.contains("Content-Length: 2\r\n") && t.ends_with("\r\n\r\n{}"),
                "{t}"
            );
            assert!(
                t.contains("Authorization: Bearer sk-1"),
                "same host keeps credentials"
            );
        }
    }

    #[test]
    fn post_becomes_get_without_body_on_301_302_303() {
        for status in [301, 302, 303] {
            let r = follow(status, "/next");
            let t = text(&r);
            assert!(t.starts_with("GET /next HTTP/1.1\r\n"), "{status}: {t}");
            assert!(
                !t.contains("Content-Length") && t.ends_with("\r\n\r\n"),
                "{t}"
            );
            assert!(!r.was_head);
        }
        let current = Upstream::parse("http://a", 1).unwrap();
        let head_request = b"HEAD /x HTTP/1.1\r\nHost: a\r\n\r\n";
        let r = next_request(&current, head_request, &head(303, Some("/y")))
            .unwrap()
            .unwrap();
        assert!(r.was_head && r.request.starts_with(b"HEAD /y "));
    }

    #[test]
    fn cross_host_strips_credentials_and_key() {
        let r = follow(307, "https://b.example/v1/chat?alt=sse&key=AIza1");
        let t = text(&r);
        assert!(
            t.starts_with("POST /v1/chat?alt=sse HTTP/1.1\r\nHost: b.example\r\n"),
            "{t}"
        );
        for secret in [
            "sk-1",
            "X-Goog",
            "api-key",
            "x-auth-token",
            "X-API-KEY",
            "AIza1",
        ] {
            assert!(!t.contains(secret), "{secret} leaked: {t}");
        }
        assert!(t.contains("Content-Type: application/json"));
        // Another port is the same host (v1 compares host names).
        let t = text(&follow(307, "https://a.example:8443/x"));
        assert!(
            t.contains("sk-1") && t.contains("Host: a.example:8443"),
            "{t}"
        );
        // The same host in other letters is the same host.
        assert!(text(&follow(307, "https://A.EXAMPLE/x")).contains("sk-1"));
    }

    #[test]
    fn resolves_locations() {
        let cases = [
            ("https://b/x?y=1#f", (Scheme::Https, "b", "/x?y=1")),
            ("http://b:81", (Scheme::Http, "b:81", "/")),
            ("//c/p", (Scheme::Https, "c", "/p")),
            ("/abs", (Scheme::Https, "a", "/abs")),
            ("?q=2", (Scheme::Https, "a", "/dir/file?q=2")),
            ("other", (Scheme::Https, "a", "/dir/other")),
            ("../up/./x", (Scheme::Https, "a", "/up/x")),
            ("sub/", (Scheme::Https, "a", "/dir/sub/")),
            ("#frag", (Scheme::Https, "a", "/dir/file?old=1")),
            ("/a b/ü", (Scheme::Https, "a", "/a%20b/%C3%BC")),
        ];
        for (location, (scheme, authority, path)) in cases {
            let got = resolve_location(Scheme::Https, "a", "/dir/file?old=1", location).unwrap();
            assert_eq!(
                got,
                (scheme, authority.to_string(), path.to_string()),
                "{location}"
            );
        }
        for bad in ["ftp://x/y", "http:/x", "//", "/x\ny", "javascript:alert(1)"] {
            assert!(
                resolve_location(Scheme::Https, "a", "/", bad).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn bad_redirect_hosts_are_errors() {
        let current = Upstream::parse("http://a", 1).unwrap();
        let e = next_request(&current, POST, &head(302, Some("http://u:p@b/")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("redirect to"), "{e}");
    }

    #[test]
    fn too_many_names_the_request_without_its_query() {
        let current = Upstream::parse("https://a.example", 1).unwrap();
        let e = too_many(&current, POST).to_string();
        assert_eq!(
            e,
            "POST \"https://a.example/v1/chat\": stopped after 10 redirects"
        );
    }
}
