//! Outbound proxies (spec §2.9): which proxy, if any, a request to an upstream goes through.
//!
//! A group's effective `proxy_url` (system setting, group-overridable) sends every upstream
//! request through that one proxy, as Go's `http.ProxyURL` does. Without one, the environment
//! decides as Go's `http.ProxyFromEnvironment` does: `HTTPS_PROXY` for https upstreams,
//! `HTTP_PROXY` for http ones, never for `localhost` or loopback addresses, and not for hosts
//! matched by `NO_PROXY`. The control plane parses all of this once (settings change, start) and
//! resolves proxy host names; a shard only reads the result.
//!
//! This module is configuration only; speaking to proxies (CONNECT, absolute-form, SOCKS5) is
//! in `conn.rs` and `socks5.rs`. Credentials never leave it in clear text except on the wire:
//! every `Display`/`Debug` form and every error message shows them as `****`.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use super::target::{Scheme, split_host_port};

/// How we talk to a proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyKind {
    /// `http://`: absolute-form requests for http upstreams, CONNECT for https ones.
    Http,
    /// `https://`: as `Http`, over TLS to the proxy itself.
    Https,
    /// `socks5://` (we resolve the upstream name) or `socks5h://` (the proxy resolves it).
    Socks5 { remote_dns: bool },
}

impl ProxyKind {
    fn scheme(self) -> &'static str {
        match self {
            ProxyKind::Http => "http",
            ProxyKind::Https => "https",
            ProxyKind::Socks5 { remote_dns: false } => "socks5",
            ProxyKind::Socks5 { remote_dns: true } => "socks5h",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            ProxyKind::Http => 80,
            ProxyKind::Https => 443,
            ProxyKind::Socks5 { .. } => 1080,
        }
    }

    /// Whether the proxy speaks HTTP (CONNECT / absolute-form) rather than SOCKS.
    pub fn is_http(self) -> bool {
        matches!(self, ProxyKind::Http | ProxyKind::Https)
    }
}

/// One proxy server, parsed from a URL, with its addresses resolved by the control plane.
#[derive(Clone)]
pub struct ProxyServer {
    pub kind: ProxyKind,
    pub host: Box<str>,
    pub port: u16,
    /// Percent-decoded user name and password, if the URL has them.
    pub credentials: Option<(Box<str>, Box<str>)>,
    /// Resolved off the shards; empty until the control plane has resolved `host`.
    pub addrs: Box<[SocketAddr]>,
    /// What pooled connections are keyed by: the whole URL, credentials included (a connection
    /// authenticated as one user is never reused for another). Never shown.
    identity: Box<str>,
}

impl ProxyServer {
    /// Parses `http|https|socks5|socks5h://[user[:pass]@]host[:port][/]`. Errors name the URL
    /// with its credentials masked and say what is wrong.
    pub fn parse(url: &str) -> Result<ProxyServer, String> {
        let url = url.trim();
        let fail = |why: &str| format!("proxy URL '{}': {why}", mask_url(url));
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| fail("expected scheme://host:port, e.g. http://127.0.0.1:7890"))?;
        let kind = match scheme.to_ascii_lowercase().as_str() {
            "http" => ProxyKind::Http,
            "https" => ProxyKind::Https,
            "socks5" => ProxyKind::Socks5 { remote_dns: false },
            "socks5h" => ProxyKind::Socks5 { remote_dns: true },
            _ => {
                return Err(fail(
                    "unsupported scheme; use http://, https://, socks5:// or socks5h://",
                ));
            }
        };
        // Go ignores a path on a proxy URL; so do we, but not a query or fragment.
        let authority = match rest.find(['/', '?', '#']) {
            Some(i) if rest[i..].contains(['?', '#']) => {
                return Err(fail("a proxy URL cannot carry a query or fragment"));
            }
            Some(i) => &rest[..i],
            None => rest,
        };
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let credentials = userinfo
            .map(|u| parse_userinfo(u, kind).map_err(|why| fail(&why)))
            .transpose()?;
        let (host, port) = split_host_port(hostport, kind.default_port())
            .ok_or_else(|| fail("invalid host or port"))?;
        let identity = match &credentials {
            Some((user, pass)) => format!("{}://{user}:{pass}@{host}:{port}", kind.scheme()),
            None => format!("{}://{host}:{port}", kind.scheme()),
        };
        Ok(ProxyServer {
            kind,
            host: host.into(),
            port,
            credentials,
            addrs: Box::new([]),
            identity: identity.into(),
        })
    }

    /// The `Proxy-Authorization` value for an HTTP proxy, if credentials were given.
    pub fn basic_authorization(&self) -> Option<String> {
        let (user, pass) = self.credentials.as_ref()?;
        Some(format!(
            "Basic {}",
            base64(format!("{user}:{pass}").as_bytes())
        ))
    }

    /// Whether pooled connections through `self` may serve a request meant for `other`.
    pub fn same_as(&self, other: &ProxyServer) -> bool {
        self.identity == other.identity
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }
}

impl fmt::Display for ProxyServer {
    /// The URL with credentials masked: safe for logs and error messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = if self.credentials.is_some() {
            "****:****@"
        } else {
            ""
        };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.to_string()
        };
        write!(f, "{}://{auth}{host}:{}", self.kind.scheme(), self.port)
    }
}

impl fmt::Debug for ProxyServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProxyServer({self}, {} addrs)", self.addrs.len())
    }
}

fn parse_userinfo(userinfo: &str, kind: ProxyKind) -> Result<(Box<str>, Box<str>), String> {
    let (user, pass) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let user = percent_decode(user).ok_or("invalid percent-encoding in the user name")?;
    let pass = percent_decode(pass).ok_or("invalid percent-encoding in the password")?;
    if user.is_empty() {
        return Err("empty user name before '@'".into());
    }
    // RFC 1929 carries each in one length byte.
    if matches!(kind, ProxyKind::Socks5 { .. }) && (user.len() > 255 || pass.len() > 255) {
        return Err("SOCKS5 user name and password are limited to 255 bytes each".into());
    }
    Ok((user.into(), pass.into()))
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `url` with anything between `://` and the last `@` of the authority replaced by `****`.
pub fn mask_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        // Not a URL at all; it may still be `user:pass@host`.
        return match url.rsplit_once('@') {
            Some((_, host)) => format!("****@{host}"),
            None => url.to_string(),
        };
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{scheme}://****@{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// Standard base64 with padding (RFC 4648), for `Proxy-Authorization: Basic`.
pub fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A group's outbound proxy rule.
#[derive(Debug, Clone)]
pub enum OutboundProxy {
    /// The effective `proxy_url`: every upstream request goes through it.
    Fixed(ProxyServer),
    /// `HTTP_PROXY` / `HTTPS_PROXY` / `NO_PROXY`, read once at start.
    Environment(EnvironmentProxy),
}

#[derive(Debug, Clone, Default)]
pub struct EnvironmentProxy {
    pub http: Option<ProxyServer>,
    pub https: Option<ProxyServer>,
    pub no_proxy: NoProxy,
}

impl OutboundProxy {
    /// The proxy for a request to `scheme://host:port`, or `None` to connect directly.
    pub fn server_for(&self, scheme: Scheme, host: &str, port: u16) -> Option<&ProxyServer> {
        match self {
            OutboundProxy::Fixed(server) => Some(server),
            OutboundProxy::Environment(env) => {
                let server = match scheme {
                    Scheme::Http => env.http.as_ref(),
                    Scheme::Https => env.https.as_ref(),
                }?;
                (!is_local(host) && !env.no_proxy.matches(host, port)).then_some(server)
            }
        }
    }

    /// Reads `HTTP_PROXY`, `HTTPS_PROXY` and `NO_PROXY` (upper case first, then lower case, as
    /// Go does) through `get`; `None` when neither proxy is set. A value without a scheme is
    /// taken as `http://` (Go again).
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Option<OutboundProxy>, String> {
        let any = |names: [&'static str; 2]| {
            names
                .iter()
                .find_map(|n| get(n).map(|v| (*n, v.trim().to_string())))
                .filter(|(_, v)| !v.is_empty())
        };
        let parse = |names: [&'static str; 2]| -> Result<Option<ProxyServer>, String> {
            let Some((name, value)) = any(names) else {
                return Ok(None);
            };
            let url = if value.contains("://") {
                value
            } else {
                format!("http://{value}")
            };
            ProxyServer::parse(&url)
                .map(Some)
                .map_err(|e| format!("{name}: {e}"))
        };
        let http = parse(["HTTP_PROXY", "http_proxy"])?;
        let https = parse(["HTTPS_PROXY", "https_proxy"])?;
        if http.is_none() && https.is_none() {
            return Ok(None);
        }
        let no_proxy = any(["NO_PROXY", "no_proxy"]).map(|(_, v)| v);
        Ok(Some(OutboundProxy::Environment(EnvironmentProxy {
            http,
            https,
            no_proxy: NoProxy::parse(no_proxy.as_deref().unwrap_or("")),
        })))
    }

    /// The proxy servers named by the rule, to resolve their hosts.
    pub fn servers(&self) -> Vec<&ProxyServer> {
        match self {
            OutboundProxy::Fixed(s) => vec![s],
            OutboundProxy::Environment(env) => env.http.iter().chain(env.https.iter()).collect(),
        }
    }

    /// A copy with every proxy's addresses taken from `lookup(host, port)`.
    pub fn with_addrs(&self, lookup: impl Fn(&str, u16) -> Vec<SocketAddr>) -> OutboundProxy {
        let fill = |s: &ProxyServer| ProxyServer {
            addrs: lookup(&s.host, s.port).into(),
            ..s.clone()
        };
        match self {
            OutboundProxy::Fixed(s) => OutboundProxy::Fixed(fill(s)),
            OutboundProxy::Environment(env) => OutboundProxy::Environment(EnvironmentProxy {
                http: env.http.as_ref().map(fill),
                https: env.https.as_ref().map(fill),
                no_proxy: env.no_proxy.clone(),
            }),
        }
    }
}

/// Go never sends `localhost` or loopback addresses to an environment proxy.
fn is_local(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `NO_PROXY` as Go's `httpproxy` reads it: a comma list of `*`, IP addresses, CIDR ranges,
/// host names (matching the host and its subdomains), `.domain` or `*.domain` (subdomains
/// only), each optionally with `:port`.
#[derive(Debug, Clone, Default)]
pub struct NoProxy {
    all: bool,
    entries: Vec<NoProxyEntry>,
}

#[derive(Debug, Clone)]
enum NoProxyEntry {
    Ip {
        ip: IpAddr,
        port: Option<u16>,
    },
    Cidr {
        net: IpAddr,
        prefix: u8,
    },
    /// `suffix` starts with a dot; `exact` says whether the bare domain matches too.
    Domain {
        suffix: String,
        exact: bool,
        port: Option<u16>,
    },
}

impl NoProxy {
    pub fn parse(list: &str) -> NoProxy {
        let mut no_proxy = NoProxy::default();
        for entry in list.split(',') {
            let entry = entry.trim().to_ascii_lowercase();
            if entry.is_empty() {
                continue;
            }
            if entry == "*" {
                no_proxy.all = true;
                continue;
            }
            if let Some(cidr) = parse_cidr(&entry) {
                no_proxy.entries.push(cidr);
                continue;
            }
            let (host, port) = split_entry_port(&entry);
            if let Ok(ip) = host.parse::<IpAddr>() {
                no_proxy.entries.push(NoProxyEntry::Ip { ip, port });
                continue;
            }
            let host = host.strip_prefix('*').unwrap_or(host);
            if host.is_empty() || host == "." {
                continue;
            }
            let (suffix, exact) = match host.strip_prefix('.') {
                Some(_) => (host.to_string(), false),
                None => (format!(".{host}"), true),
            };
            no_proxy.entries.push(NoProxyEntry::Domain {
                suffix,
                exact,
                port,
            });
        }
        no_proxy
    }

    /// Whether a request to `host:port` bypasses the proxy.
    pub fn matches(&self, host: &str, port: u16) -> bool {
        if self.all {
            return true;
        }
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let ip = host.parse::<IpAddr>().ok();
        let port_ok = |p: &Option<u16>| p.is_none_or(|p| p == port);
        self.entries.iter().any(|entry| match entry {
            NoProxyEntry::Ip { ip: want, port: p } => ip == Some(*want) && port_ok(p),
            NoProxyEntry::Cidr { net, prefix } => ip.is_some_and(|ip| in_cidr(ip, *net, *prefix)),
            NoProxyEntry::Domain {
                suffix,
                exact,
                port: p,
            } => (host.ends_with(suffix.as_str()) || (*exact && host == suffix[1..])) && port_ok(p),
        })
    }
}

/// `host:port`, `[v6]:port`, `[v6]` or a bare host/IP (a bare IPv6 address has colons but no
/// port).
fn split_entry_port(entry: &str) -> (&str, Option<u16>) {
    if let Some((host, tail)) = entry.strip_prefix('[').and_then(|r| r.split_once(']')) {
        return (host, tail.strip_prefix(':').and_then(|p| p.parse().ok()));
    }
    if entry.parse::<IpAddr>().is_ok() {
        return (entry, None);
    }
    match entry.rsplit_once(':') {
        Some((host, port)) => match port.parse() {
            Ok(port) => (host, Some(port)),
            Err(_) => (entry, None),
        },
        None => (entry, None),
    }
}

fn parse_cidr(entry: &str) -> Option<NoProxyEntry> {
    let (net, prefix) = entry.split_once('/')?;
    let net: IpAddr = net.parse().ok()?;
    let prefix: u8 = prefix.parse().ok()?;
    let max = if net.is_ipv4() { 32 } else { 128 };
    (prefix <= max).then_some(NoProxyEntry::Cidr { net, prefix })
}

fn in_cidr(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    let (ip, net, bits) = match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u32::from(a) as u128, u32::from(b) as u128, 32),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
        _ => return false,
    };
    let shift = bits - prefix as u32;
    shift >= bits || (ip >> shift) == (net >> shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proxy_urls() {
        let p = ProxyServer::parse("http://127.0.0.1:3128").unwrap();
        assert_eq!(
            (p.kind, &*p.host, p.port),
            (ProxyKind::Http, "127.0.0.1", 3128)
        );
        assert!(p.credentials.is_none() && p.basic_authorization().is_none());

        let p = ProxyServer::parse("https://u%40x:p%3Aw@proxy.example").unwrap();
        assert_eq!((p.kind, p.port), (ProxyKind::Https, 443));
        let (user, pass) = p.credentials.clone().unwrap();
        assert_eq!((&*user, &*pass), ("u@x", "p:w"));
        assert_eq!(p.to_string(), "https://****:****@proxy.example:443");
        assert!(!format!("{p:?}").contains("p:w"));

        let p = ProxyServer::parse("SOCKS5H://[::1]/").unwrap();
        assert_eq!(
            (p.kind, &*p.host, p.port),
            (ProxyKind::Socks5 { remote_dns: true }, "::1", 1080)
        );
        assert_eq!(p.to_string(), "socks5h://[::1]:1080");
        assert_eq!(
            ProxyServer::parse("socks5://h:1").unwrap().kind,
            ProxyKind::Socks5 { remote_dns: false }
        );
    }

    #[test]
    fn rejects_bad_proxy_urls_without_echoing_secrets() {
        for bad in [
            "127.0.0.1:3128",
            "ftp://h:1",
            "socks4://h:1",
            "http://",
            "http://h:0",
            "http://h:99999",
            "http://h:1?x=1",
            "http://:pw@h:1",
            "http://a b:1",
        ] {
            assert!(ProxyServer::parse(bad).is_err(), "{bad}");
        }
        let e = ProxyServer::parse("http://alice:s3cret@host:notaport").unwrap_err();
        assert!(
            e.contains("invalid host or port") && !e.contains("s3cret"),
            "{e}"
        );
        assert!(!e.contains("alice"), "{e}");
        let long = format!("socks5://{}:p@h:1", "u".repeat(256));
        assert!(ProxyServer::parse(&long).unwrap_err().contains("255"));
    }

    #[test]
    fn basic_authorization_is_base64_of_user_colon_password() {
        let p = ProxyServer::parse("http://Aladdin:open%20sesame@h:1").unwrap();
        assert_eq!(
            p.basic_authorization().unwrap(),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foob"), "Zm9vYg==");
    }

    #[test]
    fn masks_credentials_in_any_url() {
        assert_eq!(mask_url("http://u:p@h:1/x@y"), "http://****@h:1/x@y");
        assert_eq!(mask_url("http://h:1"), "http://h:1");
        assert_eq!(mask_url("u:p@h:1"), "****@h:1");
    }

    #[test]
    fn identity_separates_users_and_proxies() {
        let a = ProxyServer::parse("http://a:1@h:1").unwrap();
        let b = ProxyServer::parse("http://b:1@h:1").unwrap();
        let a2 = ProxyServer::parse("HTTP://a:1@h:1/").unwrap();
        assert!(!a.same_as(&b) && a.same_as(&a2));
        assert!(!a.same_as(&ProxyServer::parse("socks5://a:1@h:1").unwrap()));
    }

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn environment_picks_by_scheme_and_skips_loopback() {
        let rule = OutboundProxy::from_env(env(&[
            ("http_proxy", "proxy.lan:3128"),
            ("HTTPS_PROXY", "socks5h://s.lan"),
            ("no_proxy", "internal.example"),
        ]))
        .unwrap()
        .unwrap();
        let http = rule.server_for(Scheme::Http, "api.example", 80).unwrap();
        assert_eq!(http.to_string(), "http://proxy.lan:3128");
        let https = rule.server_for(Scheme::Https, "api.example", 443).unwrap();
        assert_eq!(https.kind, ProxyKind::Socks5 { remote_dns: true });
        assert!(
            rule.server_for(Scheme::Https, "a.internal.example", 443)
                .is_none()
        );
        for local in ["localhost", "127.0.0.1", "127.8.8.8", "::1"] {
            assert!(
                rule.server_for(Scheme::Http, local, 80).is_none(),
                "{local}"
            );
        }
        assert_eq!(rule.servers().len(), 2);

        let upper_first = OutboundProxy::from_env(env(&[
            ("HTTP_PROXY", "http://upper:1"),
            ("http_proxy", "http://lower:1"),
        ]))
        .unwrap()
        .unwrap();
        let server = upper_first.server_for(Scheme::Http, "x", 80).unwrap();
        assert_eq!(&*server.host, "upper");
        assert!(upper_first.server_for(Scheme::Https, "x", 443).is_none());

        assert!(OutboundProxy::from_env(env(&[])).unwrap().is_none());
        let e = OutboundProxy::from_env(env(&[("HTTPS_PROXY", "ftp://u:pw@h")])).unwrap_err();
        assert!(e.starts_with("HTTPS_PROXY") && !e.contains("pw"), "{e}");
    }

    #[test]
    fn fixed_proxy_applies_to_every_host() {
        let rule = OutboundProxy::Fixed(ProxyServer::parse("http://p:1").unwrap());
        assert!(rule.server_for(Scheme::Http, "127.0.0.1", 80).is_some());
        assert!(rule.server_for(Scheme::Https, "localhost", 443).is_some());
        let filled = rule.with_addrs(|host, port| {
            assert_eq!((host, port), ("p", 1));
            vec!["10.0.0.1:1".parse().unwrap()]
        });
        assert_eq!(filled.servers()[0].addrs.len(), 1);
    }

    #[test]
    fn no_proxy_matching() {
        let np = NoProxy::parse(
            " Example.com, .sub.test,*.star.test, 10.1.2.3, 192.168.0.0/16, host.port:8080, \
             [::2]:443, fd00::/8, ::3",
        );
        let yes = [
            ("example.com", 443),
            ("api.example.com", 80),
            ("API.EXAMPLE.COM.", 80),
            ("a.sub.test", 1),
            ("a.star.test", 1),
            ("10.1.2.3", 9),
            ("192.168.7.7", 1),
            ("host.port", 8080),
            ("::2", 443),
            ("fd12::1", 1),
            ("::3", 5),
        ];
        for (host, port) in yes {
            assert!(np.matches(host, port), "{host}:{port} should bypass");
        }
        let no = [
            ("notexample.com", 443),
            ("sub.test", 1),
            ("star.test", 1),
            ("10.1.2.4", 9),
            ("192.169.0.1", 1),
            ("host.port", 80),
            ("::2", 80),
            ("fe80::1", 1),
        ];
        for (host, port) in no {
            assert!(
                !np.matches(host, port),
                "{host}:{port} should use the proxy"
            );
        }
        assert!(NoProxy::parse("*").matches("anything", 1));
        assert!(!NoProxy::parse("").matches("anything", 1));
        assert!(!NoProxy::parse(" , ,").matches("x", 1));
    }
}
