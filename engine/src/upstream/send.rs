//! Sending one request upstream: on a pooled or new connection, direct or through the group's
//! outbound proxy, up to the final response head, following redirects as v1 does.
//!
//! What it does not do: classify the response or read its body (the caller does), retry on
//! another key (the attempt loop does).

use std::time::Duration;

use bytes::Bytes;
use monoio_rustls::TlsConnector;

use super::exchange::exchange_head;
use super::proxy::{OutboundProxy, ProxyServer};
use super::redirect::{self, MAX_REDIRECTS};
use super::target::{Scheme, Upstream};
use super::{Conn, Pool, UpstreamError, resolve};
use crate::http::ResponseHead;

/// How this shard reaches upstreams for one request: its pool and TLS client, the group's proxy
/// rule and timeouts.
pub struct SendOptions<'a> {
    pub pool: &'a Pool,
    pub tls: &'a TlsConnector,
    pub proxy: Option<&'a OutboundProxy>,
    pub was_head: bool,
    /// Bounds opening a connection (proxy handshake and TLS included) and resolving a
    /// redirect target's name.
    pub connect_timeout: Duration,
    /// Bounds each exchange, from writing the request to the end of the response head.
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
}

/// Sends `request` (origin-form HTTP/1.1, head and body) to `upstream` and returns the
/// connection with the final response head; its body is still to be read from the connection.
/// Redirects are followed up to `MAX_REDIRECTS`; a redirect response's connection is closed.
pub async fn send(
    options: &SendOptions<'_>,
    upstream: &Upstream,
    request: Vec<u8>,
) -> Result<(Conn, ResponseHead), UpstreamError> {
    // `Bytes`: the request is kept to build a redirect without copying the body per write.
    let request = Bytes::from(request);
    let (conn, head) = send_once(options, upstream, &request, options.was_head).await?;
    match redirect::next_request(upstream, &request, &head)? {
        None => Ok((conn, head)),
        // Boxed: redirects are rare, and their future would enlarge every request's.
        Some(next) => {
            drop(conn);
            Box::pin(follow_redirects(options, upstream, request, next)).await
        }
    }
}

/// Follows `next` and the redirects after it, up to `MAX_REDIRECTS` in all.
async fn follow_redirects(
    options: &SendOptions<'_>,
    upstream: &Upstream,
    mut request: Bytes,
    mut next: redirect::Redirect,
) -> Result<(Conn, ResponseHead), UpstreamError> {
    let mut target = std::borrow::Cow::Borrowed(upstream);
    let mut hops = 0;
    loop {
        if hops == MAX_REDIRECTS {
            return Err(redirect::too_many(&target, &request));
        }
        hops += 1;
        let next_target = locate(options, next.target, &target).await?;
        request = Bytes::from(next.request);
        let (conn, head) = send_once(options, &next_target, &request, next.was_head).await?;
        target = std::borrow::Cow::Owned(next_target);
        match redirect::next_request(&target, &request, &head)? {
            None => return Ok((conn, head)),
            Some(further) => next = further,
        }
    }
}

/// One exchange with `target`. A pooled connection that turns out dead before any response byte
/// gets one retry on a fresh one.
async fn send_once(
    options: &SendOptions<'_>,
    target: &Upstream,
    request: &Bytes,
    was_head: bool,
) -> Result<(Conn, ResponseHead), UpstreamError> {
    let proxy = options
        .proxy
        .and_then(|p| p.server_for(target.scheme, &target.host, target.port));
    let absolute = proxy.filter(|p| p.kind.is_http() && target.scheme == Scheme::Http);
    let request = match absolute {
        Some(p) => Bytes::from(absolute_form(request, target, p)),
        None => request.clone(),
    };
    let mut result = Err(UpstreamError::ClosedEarly { reused: true });
    if let Some(conn) = options.pool.checkout(target, proxy, options.idle_timeout) {
        result = exchange_head(conn, request.clone(), was_head, options.header_timeout).await;
    }
    if matches!(result, Err(UpstreamError::ClosedEarly { reused: true })) {
        // Boxed: connecting (TLS, proxies) is a large future that most requests, served from
        // the pool, never run; inline it would be copied through every level of the request.
        let connect = Conn::connect(target, proxy, options.tls, options.connect_timeout);
        let conn = Box::pin(connect).await?;
        result = exchange_head(conn, request, was_head, options.header_timeout).await;
    }
    match (result, absolute) {
        // Only the proxy answers 407; it is the proxy failing, not the upstream.
        (Ok((_, head)), Some(p)) if head.status == 407 => Err(UpstreamError::Connect(format!(
            "proxy {p}: 407 Proxy Authentication Required{}",
            if p.credentials.is_some() {
                " (credentials rejected)"
            } else {
                " (no credentials in the proxy URL)"
            }
        ))),
        (result, _) => result,
    }
}

/// The request as an HTTP proxy wants it for a plain-http upstream: `METHOD http://host/path`,
/// plus `Proxy-Authorization` when the proxy URL has credentials.
pub fn absolute_form(request: &[u8], target: &Upstream, proxy: &ProxyServer) -> Vec<u8> {
    let method_end = memchr::memchr(b' ', request).unwrap_or(0);
    let line_end = memchr::memmem::find(request, b"\r\n").map_or(request.len(), |i| i + 2);
    let mut out = Vec::with_capacity(request.len() + 128);
    out.extend_from_slice(&request[..method_end + 1]);
    out.extend_from_slice(b"http://");
    out.extend_from_slice(target.authority.as_bytes());
    out.extend_from_slice(&request[method_end + 1..line_end]);
    if let Some(auth) = proxy.basic_authorization() {
        crate::http::write_header(&mut out, "Proxy-Authorization", auth.as_bytes());
    }
    out.extend_from_slice(&request[line_end..]);
    out
}

/// The redirect target with addresses: the previous target's when it is the same host (with
/// the new port), none when the proxy resolves names, else resolved off the shard.
async fn locate(
    options: &SendOptions<'_>,
    mut next: Upstream,
    previous: &Upstream,
) -> Result<Upstream, UpstreamError> {
    if next.host.eq_ignore_ascii_case(&previous.host) && !previous.addrs.is_empty() {
        let port = next.port;
        next.addrs = previous
            .addrs
            .iter()
            .map(|a| std::net::SocketAddr::new(a.ip(), port))
            .collect();
        return Ok(next);
    }
    let proxy = options
        .proxy
        .and_then(|p| p.server_for(next.scheme, &next.host, next.port));
    let proxy_resolves = proxy.is_some_and(|p| {
        p.kind.is_http() || p.kind == super::proxy::ProxyKind::Socks5 { remote_dns: true }
    });
    if !proxy_resolves {
        next.addrs = resolve::resolve(&next.host, next.port, options.connect_timeout)
            .await
            .map_err(UpstreamError::Connect)?
            .into();
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_form_keeps_the_request_and_adds_proxy_auth() {
        let target = Upstream::parse("http://api.example:8080/base", 1).unwrap();
        let request = b"POST /base/v1?a=1 HTTP/1.1\r\nHost: api.example:8080\r\n\r\n{}";
        let plain = ProxyServer::parse("http://p:1").unwrap();
        assert_eq!(
            absolute_form(request, &target, &plain),
            b"POST http://api.example:8080/base/v1?a=1 HTTP/1.1\r\nHost: api.example:8080\r\n\r\n{}"
        );
        let authed = ProxyServer::parse("http://u:pw@p:1").unwrap();
        let out = String::from_utf8(absolute_form(request, &target, &authed)).unwrap();
        assert_eq!(
            out,
            "POST http://api.example:8080/base/v1?a=1 HTTP/1.1\r\n\
             Proxy-Authorization: Basic dTpwdw==\r\nHost: api.example:8080\r\n\r\n{}"
        );
    }
}
