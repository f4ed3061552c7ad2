//! Upstream connections: plain TCP, TLS (rustls) or the control plane's Unix socket, behind one
//! type with a read buffer, so the exchange and the pool need not care which.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::{TcpStream, UnixStream};
use monoio_rustls::{ClientTlsStream, TlsConnector};
use rustls_pki_types::ServerName;

use super::UpstreamError;
use super::target::{Scheme, Upstream};

/// Bytes asked for per read. 16 KiB is one TLS record, so one read drains one record.
pub const READ_CHUNK: usize = 16 * 1024;

enum Io {
    Plain(TcpStream),
    Tls(Box<ClientTlsStream<TcpStream>>),
    Unix(UnixStream),
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
}

impl Conn {
    fn new(io: Io, fd: RawFd) -> Self {
        Self {
            io,
            buf: Vec::with_capacity(READ_CHUNK),
            fd,
            reused: false,
            idle_since: Instant::now(),
        }
    }

    /// Opens a connection to one of the upstream's addresses, TLS included, within `timeout`.
    pub async fn connect(
        upstream: &Upstream,
        tls: &TlsConnector,
        timeout: Duration,
    ) -> Result<Conn, UpstreamError> {
        match monoio::time::timeout(timeout, Self::connect_inner(upstream, tls)).await {
            Ok(result) => result,
            Err(_) => Err(UpstreamError::Connect(format!(
                "dial tcp {}:{}: i/o timeout after {}s",
                upstream.host,
                upstream.port,
                timeout.as_secs()
            ))),
        }
    }

    async fn connect_inner(upstream: &Upstream, tls: &TlsConnector) -> Result<Conn, UpstreamError> {
        let tcp = connect_any(upstream).await?;
        let fd = tcp.as_raw_fd();
        let io = match upstream.scheme {
            Scheme::Http => Io::Plain(tcp),
            Scheme::Https => {
                let name = ServerName::try_from(upstream.host.to_string()).map_err(|e| {
                    UpstreamError::Connect(format!(
                        "tls: invalid server name '{}': {e}",
                        upstream.host
                    ))
                })?;
                let stream = tls.connect(name, tcp).await.map_err(|e| {
                    UpstreamError::Connect(format!("tls handshake with {}: {e}", upstream.host))
                })?;
                Io::Tls(Box::new(stream))
            }
        };
        Ok(Conn::new(io, fd))
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
        let (result, slice) = match &mut self.io {
            Io::Plain(s) => s.read(slice).await,
            Io::Tls(s) => s.read(slice).await,
            Io::Unix(s) => s.read(slice).await,
        };
        self.buf = slice.into_inner();
        result
    }

    /// Writes all of `data`.
    pub async fn write_all(&mut self, data: Vec<u8>) -> io::Result<()> {
        let (result, _) = match &mut self.io {
            Io::Plain(s) => s.write_all(data).await,
            Io::Tls(s) => s.write_all(data).await,
            Io::Unix(s) => s.write_all(data).await,
        };
        result.map(|_| ())
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
            1.. => matches!(self.io, Io::Tls(_)),
            _ => io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock,
        }
    }
}

/// Ensures at least `READ_CHUNK` bytes of spare capacity.
fn reserve_read_space(mut buf: Vec<u8>) -> Vec<u8> {
    if buf.capacity() - buf.len() < READ_CHUNK / 2 {
        buf.reserve(READ_CHUNK);
    }
    buf
}

async fn connect_any(upstream: &Upstream) -> Result<TcpStream, UpstreamError> {
    let mut last_error = None;
    for addr in upstream.addrs.iter() {
        match TcpStream::connect_addr(*addr).await {
            Ok(tcp) => {
                // Heads and small bodies go out in one write; Nagle would only delay them.
                let _ = tcp.set_nodelay(true);
                return Ok(tcp);
            }
            Err(e) => last_error = Some(format!("dial tcp {addr}: connect: {e}")),
        }
    }
    Err(UpstreamError::Connect(last_error.unwrap_or_else(|| {
        format!(
            "dial tcp {}:{}: no address resolved for the host",
            upstream.host, upstream.port
        )
    })))
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
