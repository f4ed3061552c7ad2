//! Upstream connections: plain TCP, TLS (rustls) or the control plane's Unix socket, behind one
//! type with a read buffer, so the exchange and the pool need not care which. A connection may
//! run through an outbound proxy (`proxy.rs`): an HTTP CONNECT or SOCKS5 tunnel, or, for plain
//! http upstreams behind an HTTP proxy, a connection to the proxy itself that carries
//! absolute-form requests.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use monoio::buf::{IoBuf, IoBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::{TcpStream, UnixStream};
use monoio_rustls::{ClientTlsStream, TlsConnector};
use rustls_pki_types::ServerName;

use super::UpstreamError;
use super::proxy::{ProxyKind, ProxyServer};
use super::socks5::{self, Destination};
use super::target::{Scheme, Upstream};

/// Bytes asked for per read. 16 KiB is one TLS record, so one read drains one record.
pub const READ_CHUNK: usize = 16 * 1024;

enum Io {
    Plain(TcpStream),
    Tls(Box<ClientTlsStream<TcpStream>>),
    /// TLS to an https upstream inside TLS to an https proxy.
    TlsInTls(Box<ClientTlsStream<ClientTlsStream<TcpStream>>>),
    Unix(UnixStream),
}

/// Where a connection leads, for the pool: the upstream origin and the proxy in between. A
/// connection through one proxy is never reused for a direct request or another proxy.
#[derive(Clone)]
pub struct Route {
    scheme: Scheme,
    host: Box<str>,
    port: u16,
    /// The proxy's identity (credentials included; never shown), `None` when direct.
    proxy: Option<Box<str>>,
}

impl Route {
    pub fn new(upstream: &Upstream, proxy: Option<&ProxyServer>) -> Route {
        Route {
            scheme: upstream.scheme,
            host: upstream.host.clone(),
            port: upstream.port,
            proxy: proxy.map(|p| p.identity().into()),
        }
    }

    /// Compares field by field, so a checkout builds no key.
    pub fn leads_to(&self, upstream: &Upstream, proxy: Option<&ProxyServer>) -> bool {
        self.port == upstream.port
            && self.scheme == upstream.scheme
            && self.host.eq_ignore_ascii_case(&upstream.host)
            && match (&self.proxy, proxy) {
                (None, None) => true,
                (Some(ours), Some(theirs)) => **ours == *theirs.identity(),
                _ => false,
            }
    }
}

impl std::fmt::Debug for Route {
    /// Without the proxy's identity, which holds its credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let via = if self.proxy.is_some() {
            " via proxy"
        } else {
            ""
        };
        write!(
            f,
            "Route({:?}://{}:{}{via})",
            self.scheme, self.host, self.port
        )
    }
}

impl PartialEq for Route {
    fn eq(&self, other: &Route) -> bool {
        self.port == other.port
            && self.scheme == other.scheme
            && self.host.eq_ignore_ascii_case(&other.host)
            && self.proxy == other.proxy
    }
}

/// One connection to an upstream (or to the control plane) with what has been read but not
/// yet consumed.
pub struct Conn {
    io: Io,
    /// Read buffer: bytes received and not yet consumed by the exchange.
    pub buf: Vec<u8>,
    fd: RawFd,
    /// True when the connection came from the pool: a failure before any response byte may
    /// then be a connection the upstream closed while idle, worth one retry on a fresh one.
    pub reused: bool,
    pub idle_since: Instant,
    /// Where it leads; `None` for the control plane's socket, which is pooled elsewhere.
    pub route: Option<Route>,
}

impl Conn {
    fn new(io: Io, fd: RawFd) -> Self {
        Self {
            io,
            buf: Vec::with_capacity(READ_CHUNK),
            fd,
            reused: false,
            idle_since: Instant::now(),
            route: None,
        }
    }

    /// Opens a connection to `upstream`, through `proxy` when given, TLS included, within
    /// `timeout`. Proxy failures name the proxy (credentials masked).
    pub async fn connect(
        upstream: &Upstream,
        proxy: Option<&ProxyServer>,
        tls: &TlsConnector,
        timeout: Duration,
    ) -> Result<Conn, UpstreamError> {
        let connect = async {
            match proxy {
                None => Self::connect_direct(upstream, tls).await,
                Some(p) => Self::connect_via(upstream, p, tls)
                    .await
                    .map_err(|e| UpstreamError::Connect(format!("proxy {p}: {e}"))),
            }
        };
        let mut conn = match crate::time::timeout(timeout, connect).await {
            Ok(result) => result?,
            Err(_) => {
                let secs = timeout.as_secs();
                let (host, port) = (&upstream.host, upstream.port);
                return Err(UpstreamError::Connect(match proxy {
                    None => format!("dial tcp {host}:{port}: i/o timeout after {secs}s"),
                    Some(p) => format!("proxy {p}: could not reach {host}:{port} within {secs}s"),
                }));
            }
        };
        conn.route = Some(Route::new(upstream, proxy));
        Ok(conn)
    }

    async fn connect_direct(
        upstream: &Upstream,
        tls: &TlsConnector,
    ) -> Result<Conn, UpstreamError> {
        let tcp = connect_any(&upstream.addrs, &upstream.host, upstream.port)
            .await
            .map_err(UpstreamError::Connect)?;
        let fd = tcp.as_raw_fd();
        let io = match upstream.scheme {
            Scheme::Http => Io::Plain(tcp),
            Scheme::Https => wrap_tls(Io::Plain(tcp), tls, &upstream.host)
                .await
                .map_err(UpstreamError::Connect)?,
        };
        Ok(Conn::new(io, fd))
    }

    /// TCP (and TLS for https://) to the proxy, then a tunnel for https upstreams and every
    /// SOCKS5 one, then TLS to an https upstream inside it.
    async fn connect_via(
        upstream: &Upstream,
        proxy: &ProxyServer,
        tls: &TlsConnector,
    ) -> Result<Conn, String> {
        let tcp = connect_any(&proxy.addrs, &proxy.host, proxy.port).await?;
        let fd = tcp.as_raw_fd();
        let mut io = Io::Plain(tcp);
        if proxy.kind == ProxyKind::Https {
            io = wrap_tls(io, tls, &proxy.host).await?;
        }
        let mut conn = Conn::new(io, fd);
        match proxy.kind {
            ProxyKind::Http | ProxyKind::Https if upstream.scheme == Scheme::Http => {
                // Absolute-form requests go to the proxy on this very connection.
                return Ok(conn);
            }
            ProxyKind::Http | ProxyKind::Https => http_connect(&mut conn, upstream, proxy).await?,
            ProxyKind::Socks5 { remote_dns } => {
                let dest = socks_destination(upstream, remote_dns)?;
                socks5::handshake(&mut conn, proxy, dest).await?;
            }
        }
        if !conn.buf.is_empty() {
            return Err("the proxy sent data before the tunnel was used".into());
        }
        match upstream.scheme {
            Scheme::Http => Ok(conn),
            Scheme::Https => Ok(Conn::new(wrap_tls(conn.io, tls, &upstream.host).await?, fd)),
        }
    }

    /// Connects to the control plane's socket.
    pub async fn connect_unix(path: &std::path::Path) -> Result<Conn, UpstreamError> {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|e| UpstreamError::Connect(format!("control plane socket: {e}")))?;
        let fd = stream.as_raw_fd();
        Ok(Conn::new(Io::Unix(stream), fd))
    }

    /// Reads more bytes onto the end of `buf`; `Ok(0)` is end of stream.
    pub async fn read_more(&mut self) -> io::Result<usize> {
        let buf = std::mem::take(&mut self.buf);
        let buf = reserve_read_space(buf);
        let len = buf.len();
        let cap = buf.capacity();
        let slice = buf.slice_mut(len..cap);
        // TLS reads and writes are boxed: their futures are large, and inline they would
        // enlarge every plain-TCP request's future chain too (see `crate::time`).
        let (result, slice) = match &mut self.io {
            Io::Plain(s) => s.read(slice).await,
            Io::Tls(s) => Box::pin(s.read(slice)).await,
            Io::TlsInTls(s) => Box::pin(s.read(slice)).await,
            Io::Unix(s) => s.read(slice).await,
        };
        self.buf = slice.into_inner();
        result
    }

    /// Writes all of `data` (a `Vec<u8>`, or `Bytes` to keep a copy without copying).
    pub async fn write_all<B: IoBuf + 'static>(&mut self, data: B) -> io::Result<()> {
        let (result, _) = match &mut self.io {
            Io::Plain(s) => s.write_all(data).await,
            Io::Tls(s) => Box::pin(s.write_all(data)).await,
            Io::TlsInTls(s) => Box::pin(s.write_all(data)).await,
            Io::Unix(s) => s.write_all(data).await,
        };
        result.map(|_| ())
    }

    /// Resolves when the peer has sent something (or closed): used to notice an early answer
    /// while a request body is still being streamed. Never resolves for TLS connections, whose
    /// readable bytes may be records rather than response data.
    pub async fn readable(&self) {
        // An error is the peer's close, which counts as "something to read": the next read
        // reports it.
        let _ = match &self.io {
            Io::Plain(s) => s.readable(false).await,
            Io::Unix(s) => s.readable(false).await,
            Io::Tls(_) | Io::TlsInTls(_) => std::future::pending().await,
        };
    }

    /// Whether an idle connection still looks usable: the peer has not closed it and, for plain
    /// HTTP, has not sent anything unasked. A cheap non-blocking peek, no await.
    pub fn looks_alive(&self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut byte = 0u8;
        // SAFETY: `fd` belongs to the socket owned by `self.io`, which outlives this call, and
        // the buffer is one valid byte.
        let n = unsafe {
            libc::recv(
                self.fd,
                (&mut byte as *mut u8).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        match n {
            0 => false,
            // TLS may have a record waiting (a session ticket); only EOF condemns it.
            1.. => matches!(self.io, Io::Tls(_) | Io::TlsInTls(_)),
            _ => io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock,
        }
    }
}

/// Starts TLS with `host` over `io` (TCP, or TLS to an https proxy).
async fn wrap_tls(io: Io, tls: &TlsConnector, host: &str) -> Result<Io, String> {
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| format!("tls: invalid server name '{host}': {e}"))?;
    let failed = |e| format!("tls handshake with {host}: {e}");
    match io {
        Io::Plain(tcp) => Ok(Io::Tls(Box::new(
            tls.connect(name, tcp).await.map_err(failed)?,
        ))),
        Io::Tls(inner) => Ok(Io::TlsInTls(Box::new(
            tls.connect(name, *inner).await.map_err(failed)?,
        ))),
        Io::TlsInTls(_) | Io::Unix(_) => Err("tls: cannot add another TLS layer".into()),
    }
}

/// Asks an HTTP proxy for a tunnel to the upstream (`CONNECT host:port`).
async fn http_connect(
    conn: &mut Conn,
    upstream: &Upstream,
    proxy: &ProxyServer,
) -> Result<(), String> {
    let target = if upstream.host.contains(':') {
        format!("[{}]:{}", upstream.host, upstream.port)
    } else {
        format!("{}:{}", upstream.host, upstream.port)
    };
    let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(auth) = proxy.basic_authorization() {
        request.push_str(&format!("Proxy-Authorization: {auth}\r\n"));
    }
    request.push_str("\r\n");
    conn.write_all(request.into_bytes())
        .await
        .map_err(|e| format!("write to the proxy: {e}"))?;
    // No body is read after a CONNECT answer: the tunnel starts, or the connection is dropped.
    let head = super::read_response_head(conn, true)
        .await
        .map_err(|e| match e {
            UpstreamError::ClosedEarly { .. } => {
                format!("the proxy closed the connection without answering CONNECT {target}")
            }
            UpstreamError::Protocol(m) => format!("malformed answer to CONNECT {target}: {m}"),
            other => other.to_string(),
        })?;
    if !(200..300).contains(&head.status) {
        return Err(format!(
            "CONNECT {target} refused: {} {}",
            head.status,
            proxy_reason(&head)
        ));
    }
    Ok(())
}

/// The reason phrase of a proxy's refusal: the standard one, else the proxy's own (shortened).
fn proxy_reason(head: &crate::http::ResponseHead) -> String {
    match head.status {
        407 => "Proxy Authentication Required".into(),
        status => match crate::http::reason_phrase(status) {
            "" => head.reason.chars().take(64).collect(),
            known => known.into(),
        },
    }
}

/// SOCKS5 CONNECT by name (`socks5h`) or by an address we resolved (`socks5`).
fn socks_destination(upstream: &Upstream, remote_dns: bool) -> Result<Destination<'_>, String> {
    if remote_dns {
        return Ok(Destination::Name(&upstream.host, upstream.port));
    }
    match upstream.addrs.first() {
        Some(addr) => Ok(Destination::Addr(*addr)),
        None => Err(format!(
            "no address resolved for {}; socks5h:// lets the proxy resolve it",
            upstream.host
        )),
    }
}

/// Ensures at least `READ_CHUNK` bytes of spare capacity.
fn reserve_read_space(mut buf: Vec<u8>) -> Vec<u8> {
    if buf.capacity() - buf.len() < READ_CHUNK / 2 {
        buf.reserve(READ_CHUNK);
    }
    buf
}

async fn connect_any(addrs: &[SocketAddr], host: &str, port: u16) -> Result<TcpStream, String> {
    let mut last_error = None;
    for addr in addrs {
        match TcpStream::connect_addr(*addr).await {
            Ok(tcp) => {
                // Heads and small bodies go out in one write; Nagle would only delay them.
                let _ = tcp.set_nodelay(true);
                return Ok(tcp);
            }
            Err(e) => last_error = Some(format!("dial tcp {addr}: connect: {e}")),
        }
    }
    Err(last_error
        .unwrap_or_else(|| format!("dial tcp {host}:{port}: no address resolved for the host")))
}

/// The TLS client configuration every shard shares: ring provider, HTTP/1.1 ALPN, the
/// webpki roots plus any certificates in the PEM file `extra_roots` (e.g. `SSL_CERT_FILE`).
pub fn tls_config(extra_roots: Option<&std::path::Path>) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = extra_roots {
        use rustls_pki_types::pem::PemObject;
        let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("certificate file '{}': {e}", path.display()))?;
        for cert in certs {
            let cert = cert.map_err(|e| format!("certificate file '{}': {e}", path.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("certificate file '{}': {e}", path.display()))?;
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
