//! Outbound proxies and redirects (spec §2.9) end to end: the real binary, the recording mock
//! upstream, and small servers written here that record what they saw: an HTTP proxy
//! (absolute-form and CONNECT), a SOCKS5 proxy, and a raw upstream that answers redirects.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use common::{PROXY_KEY, Server, WAIT, within};
use mock_upstream::MockUpstream;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const SECRET: &str = "hunter2-Proxy-Pass";

fn chat_body(stream: bool) -> Value {
    json!({"model": "gpt-4o-mini", "stream": stream,
           "messages": [{"role": "user", "content": "hi"}]})
}

/// POSTs a chat request to group `group` with PROXY_KEY and extra headers; (status, body).
async fn chat(server: &Server, group: &str, headers: &[(&str, &str)]) -> (u16, String) {
    chat_with(server, group, headers, false).await
}

async fn chat_with(
    server: &Server,
    group: &str,
    headers: &[(&str, &str)],
    stream: bool,
) -> (u16, String) {
    let mut request = server
        .client
        .post(server.url(&format!("/proxy/{group}/v1/chat/completions")))
        .bearer_auth(PROXY_KEY)
        .timeout(WAIT)
        .json(&chat_body(stream));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("proxy request");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

/// Creates an OpenAI group `name` on `upstream` with one key and `extra` fields.
async fn group(server: &Server, name: &str, upstream: &str, key: &str, extra: Value) -> i64 {
    let id = server.create_group(name, "openai", upstream, extra).await;
    server.add_keys(id, &[key]).await;
    id
}

async fn set_system_proxy(server: &Server, url: &str) {
    let (status, body) = server
        .api("PUT", "/api/settings", Some(json!({"proxy_url": url})))
        .await;
    assert_eq!(status, 200, "{body}");
}

/// `(status_code, request_type, error_message)` of every logged attempt; read after `stop`.
fn logged_attempts(server: &Server) -> Vec<(i64, String, String)> {
    let db = server.db();
    let mut query = db
        .prepare("SELECT status_code, request_type, error_message FROM request_logs ORDER BY id")
        .expect("prepare");
    query
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .expect("query request_logs")
        .map(|row| row.expect("row"))
        .collect()
}

/// A TLS mock and the file holding its CA, for `SSL_CERT_FILE`.
async fn tls_mock() -> (MockUpstream, tempfile::TempDir, String) {
    let mock = MockUpstream::start_tls().await;
    let (dir, path) = ca_file(&[mock.ca_pem().expect("ca")]);
    (mock, dir, path)
}

/// A PEM file holding `certificates`; the directory lives as long as the returned guard.
fn ca_file(certificates: &[String]) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ca.pem");
    std::fs::write(&path, certificates.concat()).expect("write ca");
    let path = path.to_string_lossy().into_owned();
    (dir, path)
}

/// Host names the helpers serve are all this machine: the test never needs DNS.
fn local_addr(host: &str, port: u16) -> SocketAddr {
    let ip = host
        .trim_matches(['[', ']'])
        .parse()
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    SocketAddr::new(ip, port)
}

fn split_host_port(authority: &str) -> (String, u16) {
    let (host, port) = authority.rsplit_once(':').expect("host:port");
    (host.to_string(), port.parse().expect("port"))
}

async fn read_head<R: AsyncRead + Unpin>(reader: &mut BufReader<R>) -> Option<Vec<String>> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let line = line.trim_end().to_string();
        if line.is_empty() {
            return Some(lines);
        }
        lines.push(line);
    }
}

fn header_of<'a>(lines: &'a [String], name: &str) -> Option<&'a str> {
    lines.iter().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

// ---------------------------------------------------------------------------------------------
// An HTTP proxy: absolute-form requests are relayed one by one (origin-form, `Connection:
// close` upstream), CONNECT opens a tunnel. It can demand credentials (407 otherwise).

#[derive(Debug, Clone)]
struct ProxySeen {
    request_line: String,
    proxy_authorization: Option<String>,
}

#[derive(Clone)]
struct HttpProxy {
    port: u16,
    seen: Arc<Mutex<Vec<ProxySeen>>>,
    /// Expected `Proxy-Authorization`; anything else gets 407.
    required: Option<String>,
}

impl HttpProxy {
    async fn start(required: Option<&str>) -> HttpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let proxy = HttpProxy {
            port: listener.local_addr().expect("addr").port(),
            seen: Arc::default(),
            required: required.map(String::from),
        };
        let state = proxy.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(state.clone().serve(stream));
            }
        });
        proxy
    }

    fn seen(&self) -> Vec<ProxySeen> {
        self.seen.lock().unwrap().clone()
    }

    fn url(&self, userinfo: &str) -> String {
        format!("http://{userinfo}127.0.0.1:{}", self.port)
    }

    async fn serve(self, stream: TcpStream) {
        let mut client = BufReader::new(stream);
        while let Some(head) = read_head(&mut client).await {
            let seen = ProxySeen {
                request_line: head[0].clone(),
                proxy_authorization: header_of(&head, "proxy-authorization").map(String::from),
            };
            self.seen.lock().unwrap().push(seen.clone());
            if self.required.is_some() && seen.proxy_authorization != self.required {
                let answer = "HTTP/1.1 407 Proxy Authentication Required\r\n\
                    Proxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\n\
                    Connection: close\r\n\r\n";
                let _ = client.write_all(answer.as_bytes()).await;
                return;
            }
            let mut parts = head[0].split(' ');
            let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            if method == "CONNECT" {
                let (host, port) = split_host_port(target);
                let Ok(mut upstream) = TcpStream::connect(local_addr(&host, port)).await else {
                    let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                    return;
                };
                let ok = b"HTTP/1.1 200 Connection established\r\n\r\n";
                if client.write_all(ok).await.is_ok() {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
                return;
            }
            if relay_absolute(&mut client, method, target, &head)
                .await
                .is_none()
            {
                return;
            }
        }
    }
}

/// Relays one absolute-form request and its whole response.
async fn relay_absolute(
    client: &mut BufReader<TcpStream>,
    method: &str,
    target: &str,
    head: &[String],
) -> Option<()> {
    let rest = target.strip_prefix("http://")?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let length: usize = header_of(head, "content-length").map_or(0, |v| v.parse().unwrap_or(0));
    let mut body = vec![0u8; length];
    client.read_exact(&mut body).await.ok()?;
    let mut request = format!("{method} {path} HTTP/1.1\r\n");
    for line in &head[1..] {
        let name = line
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if !["proxy-authorization", "proxy-connection", "connection"].contains(&name.as_str()) {
            request.push_str(line);
            request.push_str("\r\n");
        }
    }
    request.push_str("Connection: close\r\n\r\n");
    let (host, port) = split_host_port(authority);
    let mut upstream = TcpStream::connect(local_addr(&host, port)).await.ok()?;
    upstream.write_all(request.as_bytes()).await.ok()?;
    upstream.write_all(&body).await.ok()?;
    let mut response = Vec::new();
    upstream.read_to_end(&mut response).await.ok()?;
    client.write_all(&response).await.ok()
}

/// TLS in front of a plain test proxy, making it an `https://` proxy: a fresh CA and a leaf for
/// 127.0.0.1, then every decrypted byte relayed to `inner_port`.
struct TlsFront {
    port: u16,
    ca_pem: String,
}

impl TlsFront {
    async fn start(inner_port: u16) -> TlsFront {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let mut ca_params = CertificateParams::default();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca =
            CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("key")).expect("ca");
        let leaf_key = KeyPair::generate().expect("key");
        let mut leaf_params = CertificateParams::new(vec!["127.0.0.1".into()]).expect("params");
        leaf_params.is_ca = IsCa::ExplicitNoCa;
        let leaf = leaf_params.signed_by(&leaf_key, &ca).expect("leaf");
        let key = rustls_pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone()], key)
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let mut tls = acceptor.accept(stream).await.ok()?;
                    let mut inner = TcpStream::connect(("127.0.0.1", inner_port)).await.ok()?;
                    tokio::io::copy_bidirectional(&mut tls, &mut inner)
                        .await
                        .ok()
                });
            }
        });
        TlsFront {
            port,
            ca_pem: ca.pem(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A SOCKS5 proxy (RFC 1928/1929), optionally demanding a user and password.

#[derive(Debug, Clone, PartialEq)]
struct SocksSeen {
    /// The user name and password the client authenticated with, if any.
    login: Option<(String, String)>,
    /// `"ipv4 127.0.0.1:80"` or `"name localhost:443"`.
    destination: String,
}

#[derive(Clone)]
struct Socks5Proxy {
    port: u16,
    seen: Arc<Mutex<Vec<SocksSeen>>>,
    login: Option<(String, String)>,
}

impl Socks5Proxy {
    async fn start(login: Option<(&str, &str)>) -> Socks5Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind socks");
        let proxy = Socks5Proxy {
            port: listener.local_addr().expect("addr").port(),
            seen: Arc::default(),
            login: login.map(|(u, p)| (u.to_string(), p.to_string())),
        };
        let state = proxy.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(state.clone().serve(stream));
            }
        });
        proxy
    }

    fn seen(&self) -> Vec<SocksSeen> {
        self.seen.lock().unwrap().clone()
    }

    async fn serve(self, mut stream: TcpStream) -> Option<()> {
        let mut greeting = [0u8; 2];
        stream.read_exact(&mut greeting).await.ok()?;
        let mut methods = vec![0u8; greeting[1] as usize];
        stream.read_exact(&mut methods).await.ok()?;
        let login = match &self.login {
            None => {
                stream.write_all(&[5, 0]).await.ok()?;
                None
            }
            Some(expected) => {
                if !methods.contains(&2) {
                    stream.write_all(&[5, 0xff]).await.ok()?;
                    return None;
                }
                stream.write_all(&[5, 2]).await.ok()?;
                let user = read_prefixed(&mut stream, 2).await?;
                let pass = read_prefixed(&mut stream, 0).await?;
                let ok = (&user, &pass) == (&expected.0, &expected.1);
                stream.write_all(&[1, if ok { 0 } else { 1 }]).await.ok()?;
                if !ok {
                    return None;
                }
                Some((user, pass))
            }
        };
        let mut request = [0u8; 4];
        stream.read_exact(&mut request).await.ok()?;
        let (destination, addr) = match request[3] {
            1 => {
                let mut ip = [0u8; 4];
                stream.read_exact(&mut ip).await.ok()?;
                let port = stream.read_u16().await.ok()?;
                let addr = SocketAddr::from((ip, port));
                (format!("ipv4 {addr}"), addr)
            }
            3 => {
                let name = read_prefixed(&mut stream, 0).await?;
                let port = stream.read_u16().await.ok()?;
                (format!("name {name}:{port}"), local_addr(&name, port))
            }
            _ => return None,
        };
        self.seen
            .lock()
            .unwrap()
            .push(SocksSeen { login, destination });
        let mut upstream = match TcpStream::connect(addr).await {
            Ok(s) => s,
            Err(_) => {
                stream
                    .write_all(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0])
                    .await
                    .ok()?;
                return None;
            }
        };
        stream
            .write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0])
            .await
            .ok()?;
        tokio::io::copy_bidirectional(&mut stream, &mut upstream)
            .await
            .ok()
            .map(|_| ())
    }
}

/// Reads `skip` bytes, then a length byte and that many bytes as text.
async fn read_prefixed(stream: &mut TcpStream, skip: usize) -> Option<String> {
    let mut skipped = vec![0u8; skip];
    stream.read_exact(&mut skipped).await.ok()?;
    let len = if skip > 0 {
        skipped[skip - 1]
    } else {
        stream.read_u8().await.ok()?
    };
    let mut text = vec![0u8; len as usize];
    stream.read_exact(&mut text).await.ok()?;
    String::from_utf8(text).ok()
}

// ---------------------------------------------------------------------------------------------
// A raw upstream whose answers a test scripts: for redirects.

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    headers: Vec<String>,
}

type Script = Arc<dyn Fn(&Seen) -> (u16, Vec<(String, String)>) + Send + Sync>;

#[derive(Clone)]
struct Redirector {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Redirector {
    /// Answers every request with `script(request)`: a status and headers, empty body.
    async fn start(
        script: impl Fn(&Seen) -> (u16, Vec<(String, String)>) + Send + Sync + 'static,
    ) -> Redirector {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let server = Redirector {
            port: listener.local_addr().expect("addr").port(),
            seen: Arc::default(),
        };
        let script: Script = Arc::new(script);
        let seen = server.seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve_scripted(stream, seen.clone(), script.clone()));
            }
        });
        server
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn serve_scripted(stream: TcpStream, seen: Arc<Mutex<Vec<Seen>>>, script: Script) {
    let mut client = BufReader::new(stream);
    while let Some(head) = read_head(&mut client).await {
        let length: usize =
            header_of(&head, "content-length").map_or(0, |v| v.parse().unwrap_or(0));
        let mut body = vec![0u8; length];
        if client.read_exact(&mut body).await.is_err() {
            return;
        }
        let mut parts = head[0].split(' ');
        let request = Seen {
            method: parts.next().unwrap_or("").to_string(),
            target: parts.next().unwrap_or("").to_string(),
            headers: head[1..].to_vec(),
        };
        seen.lock().unwrap().push(request.clone());
        let (status, headers) = script(&request);
        let mut answer = format!("HTTP/1.1 {status} Redirect\r\nContent-Length: 0\r\n");
        for (name, value) in headers {
            answer.push_str(&format!("{name}: {value}\r\n"));
        }
        answer.push_str("\r\n");
        let close = header_of(&head, "connection").is_some_and(|c| c.eq_ignore_ascii_case("close"));
        if client.write_all(answer.as_bytes()).await.is_err() || close {
            return;
        }
    }
}

fn location(url: String) -> Vec<(String, String)> {
    vec![("Location".to_string(), url)]
}

// ---------------------------------------------------------------------------------------------
// §2.9 outbound proxy.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_upstream_goes_through_an_http_proxy_in_absolute_form_with_credentials() {
    let mock = MockUpstream::start().await;
    let proxy = HttpProxy::start(None).await;
    let server = Server::start().await;
    let config = json!({"config": {"proxy_url": proxy.url(&format!("alice:{SECRET}@"))}});
    group(&server, "g", &mock.url(), "sk-upstream-1", config).await;

    let (status, body) = chat(&server, "g", &[]).await;
    assert_eq!(status, 200, "{body}");
    let seen = proxy.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        seen[0].request_line,
        format!("POST {}/v1/chat/completions HTTP/1.1", mock.url())
    );
    // base64("alice:hunter2-Proxy-Pass")
    assert_eq!(
        seen[0].proxy_authorization.as_deref(),
        Some("Basic YWxpY2U6aHVudGVyMi1Qcm94eS1QYXNz")
    );
    let sent = &mock.requests()[0];
    assert_eq!(sent.upstream_key().as_deref(), Some("sk-upstream-1"));
    assert_eq!(sent.json()["model"], "gpt-4o-mini");
    server.assert_logs_free_of(&[SECRET]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstream_is_tunnelled_with_connect_and_pooled_per_proxy() {
    let (mock, _ca_dir, ca) = tls_mock().await;
    let proxy = HttpProxy::start(Some("Basic Ym9iOmh1bnRlcjItUHJveHktUGFzcw==")).await;
    // One shard: every request meets the same pool.
    let server = Server::start_with(&[("SSL_CERT_FILE", &ca), ("ENGINE_THREADS", "1")]).await;
    group(&server, "direct", &mock.url(), "sk-direct", json!({})).await;
    let config = json!({"config": {"proxy_url": proxy.url(&format!("bob:{SECRET}@"))}});
    group(&server, "proxied", &mock.url(), "sk-proxied", config).await;

    // A direct connection to the mock is pooled first; the proxied group must not take it.
    assert_eq!(chat(&server, "direct", &[]).await.0, 200);
    assert!(proxy.seen().is_empty());
    let (status, body) = chat(&server, "proxied", &[]).await;
    assert_eq!(status, 200, "{body}");
    let seen = proxy.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let port = mock.port();
    assert_eq!(
        seen[0].request_line,
        format!("CONNECT localhost:{port} HTTP/1.1")
    );
    assert_eq!(
        seen[0].proxy_authorization.as_deref(),
        Some("Basic Ym9iOmh1bnRlcjItUHJveHktUGFzcw==")
    );
    // The tunnelled connection is reused by the proxied group, and only by it.
    assert_eq!(chat(&server, "proxied", &[]).await.0, 200);
    assert_eq!(chat(&server, "direct", &[]).await.0, 200);
    assert_eq!(
        proxy.seen().len(),
        1,
        "a second CONNECT: {:?}",
        proxy.seen()
    );
    let keys: Vec<_> = mock
        .requests()
        .iter()
        .map(|r| r.upstream_key().unwrap_or_default())
        .collect();
    assert_eq!(keys, ["sk-direct", "sk-proxied", "sk-proxied", "sk-direct"]);
    server.assert_logs_free_of(&[SECRET]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_proxy_carries_absolute_form_and_tls_inside_tls() {
    let tls = MockUpstream::start_tls().await;
    let plain = MockUpstream::start().await;
    let proxy = HttpProxy::start(Some("Basic Z3JhY2U6aHVudGVyMi1Qcm94eS1QYXNz")).await;
    let front = TlsFront::start(proxy.port).await;
    let (_ca_dir, ca) = ca_file(&[tls.ca_pem().expect("ca"), front.ca_pem.clone()]);
    let server = Server::start_with(&[("SSL_CERT_FILE", &ca)]).await;
    let url = format!("https://grace:{SECRET}@127.0.0.1:{}", front.port);
    let config = json!({"config": {"proxy_url": url}});
    group(&server, "tls", &tls.url(), "sk-tls", config.clone()).await;
    group(&server, "plain", &plain.url(), "sk-plain", config).await;

    for name in ["tls", "plain"] {
        let (status, body) = chat(&server, name, &[]).await;
        assert_eq!(status, 200, "{name}: {body}");
    }
    let lines: Vec<_> = proxy.seen().into_iter().map(|s| s.request_line).collect();
    assert_eq!(
        lines,
        [
            format!("CONNECT localhost:{} HTTP/1.1", tls.port()),
            format!("POST {}/v1/chat/completions HTTP/1.1", plain.url()),
        ]
    );
    assert_eq!(tls.requests()[0].upstream_key().as_deref(), Some("sk-tls"));
    assert_eq!(
        plain.requests()[0].upstream_key().as_deref(),
        Some("sk-plain")
    );
    server.assert_logs_free_of(&[SECRET]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socks5_with_and_without_credentials() {
    let (tls, _ca_dir, ca) = tls_mock().await;
    let plain = MockUpstream::start().await;
    let open = Socks5Proxy::start(None).await;
    let guarded = Socks5Proxy::start(Some(("carol", SECRET))).await;
    let server = Server::start_with(&[("SSL_CERT_FILE", &ca)]).await;
    let open_url = format!("socks5://127.0.0.1:{}", open.port);
    group(
        &server,
        "open",
        &plain.url(),
        "sk-open",
        json!({"config": {"proxy_url": open_url}}),
    )
    .await;
    let guarded_url = format!("socks5h://carol:{SECRET}@127.0.0.1:{}", guarded.port);
    let config = json!({"config": {"proxy_url": guarded_url}});
    group(&server, "guarded", &tls.url(), "sk-guarded", config).await;

    let (status, body) = chat(&server, "open", &[]).await;
    assert_eq!(status, 200, "{body}");
    // socks5://: we resolved the name and connect by address.
    let expected = SocksSeen {
        login: None,
        destination: format!("ipv4 127.0.0.1:{}", plain.port()),
    };
    assert_eq!(open.seen(), [expected]);
    assert_eq!(
        plain.requests()[0].upstream_key().as_deref(),
        Some("sk-open")
    );

    let (status, body) = chat(&server, "guarded", &[]).await;
    assert_eq!(status, 200, "{body}");
    // socks5h://: the proxy gets the name, then TLS to the upstream runs inside the tunnel.
    let expected = SocksSeen {
        login: Some(("carol".into(), SECRET.into())),
        destination: format!("name localhost:{}", tls.port()),
    };
    assert_eq!(guarded.seen(), [expected]);
    assert_eq!(
        tls.requests()[0].upstream_key().as_deref(),
        Some("sk-guarded")
    );
    server.assert_logs_free_of(&[SECRET]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_proxy_url_overrides_the_system_one() {
    let mock = MockUpstream::start().await;
    let system = HttpProxy::start(None).await;
    let own = HttpProxy::start(None).await;
    let server = Server::start().await;
    set_system_proxy(&server, &system.url("")).await;
    group(&server, "inherits", &mock.url(), "sk-1", json!({})).await;
    let config = json!({"config": {"proxy_url": own.url("")}});
    group(&server, "overrides", &mock.url(), "sk-2", config).await;
    let config = json!({"config": {"proxy_url": ""}});
    group(&server, "opts-out", &mock.url(), "sk-3", config).await;

    for name in ["inherits", "overrides", "opts-out"] {
        let (status, body) = chat(&server, name, &[]).await;
        assert_eq!(status, 200, "{name}: {body}");
    }
    assert_eq!(system.seen().len(), 1, "{:?}", system.seen());
    assert_eq!(own.seen().len(), 1, "{:?}", own.seen());
    assert_eq!(mock.request_count(), 3, "the opted-out group went direct");

    // Clearing the system setting sends the inheriting group direct.
    set_system_proxy(&server, "").await;
    assert_eq!(chat(&server, "inherits", &[]).await.0, 200);
    assert_eq!(system.seen().len(), 1);
    assert_eq!(mock.request_count(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_proxy_honours_no_proxy_and_skips_loopback() {
    let mock = MockUpstream::start().await;
    let proxy = HttpProxy::start(None).await;
    let port = mock.port();
    let server = Server::start_with(&[
        ("HTTP_PROXY", &proxy.url("")),
        ("NO_PROXY", "example.org, 0.0.0.0"),
    ])
    .await;
    // Only the proxy knows this name: the request can only succeed through it.
    let named = format!("http://upstream.proxy-only.test:{port}");
    group(&server, "named", &named, "sk-1", json!({})).await;
    // 0.0.0.0 is this machine but not loopback to Go's rules: only NO_PROXY keeps it direct.
    group(
        &server,
        "listed",
        &format!("http://0.0.0.0:{port}"),
        "sk-2",
        json!({}),
    )
    .await;
    group(&server, "loopback", &mock.url(), "sk-3", json!({})).await;

    let (status, body) = chat(&server, "named", &[]).await;
    assert_eq!(status, 200, "{body}");
    let seen = proxy.seen();
    assert_eq!(
        seen.iter()
            .map(|s| s.request_line.as_str())
            .collect::<Vec<_>>(),
        [format!("POST {named}/v1/chat/completions HTTP/1.1")]
    );
    assert_eq!(seen[0].proxy_authorization, None);
    for name in ["listed", "loopback"] {
        let (status, body) = chat(&server, name, &[]).await;
        assert_eq!(status, 200, "{name}: {body}");
    }
    assert_eq!(
        proxy.seen().len(),
        1,
        "bypassed hosts went through: {:?}",
        proxy.seen()
    );
    assert_eq!(mock.request_count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_proxy_fails_each_attempt_with_a_clear_error() {
    let mock = MockUpstream::start().await;
    let closed = common::free_port();
    let mut server = Server::start().await;
    let url = format!("http://dave:{SECRET}@127.0.0.1:{closed}");
    let config = json!({"config": {"proxy_url": url, "max_retries": 1}});
    let id = server
        .create_group("g", "openai", &mock.url(), config)
        .await;
    server
        .add_keys(id, &["sk-upstream-1", "sk-upstream-2"])
        .await;

    let (status, body) = chat(&server, "g", &[]).await;
    assert_eq!(status, 500, "{body}");
    let body: Value = serde_json::from_str(&body).expect("json");
    let message = body["message"].as_str().expect("message");
    assert_eq!(body["code"], "UPSTREAM_ERROR");
    assert!(
        message.starts_with(&format!(
            "proxy http://****:****@127.0.0.1:{closed}: dial tcp"
        )),
        "{message}"
    );
    assert!(
        message.to_ascii_lowercase().contains("refused"),
        "{message}"
    );
    assert_eq!(mock.request_count(), 0);
    // Both keys were tried, each attempt counted as a transport failure.
    for key in server.list_keys(id).await {
        assert_eq!(key["failure_count"], 1, "{key}");
    }
    server.stop().await;
    let attempts = logged_attempts(&server);
    let mut kinds: Vec<_> = attempts.iter().map(|(s, t, _)| (*s, t.as_str())).collect();
    kinds.sort();
    assert_eq!(kinds, [(500, "final"), (500, "retry")]);
    assert!(
        attempts
            .iter()
            .all(|(_, _, e)| e.contains("proxy http://****"))
    );
    assert!(attempts.iter().all(|(_, _, e)| !e.contains(SECRET)));
    server.assert_logs_free_of(&[SECRET]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_answering_407_fails_the_attempt_and_the_next_key_is_tried() {
    let (tls, _ca_dir, ca) = tls_mock().await;
    let plain = MockUpstream::start().await;
    let proxy = HttpProxy::start(Some("Basic cmlnaHQ6cmlnaHQ=")).await;
    let mut server = Server::start_with(&[("SSL_CERT_FILE", &ca)]).await;
    let url = proxy.url(&format!("erin:{SECRET}@"));
    let config = json!({"config": {"proxy_url": url, "max_retries": 1}});
    let tunnelled = server
        .create_group("tunnel", "openai", &tls.url(), config.clone())
        .await;
    server.add_keys(tunnelled, &["sk-t-1", "sk-t-2"]).await;
    let absolute = server
        .create_group("absolute", "openai", &plain.url(), config)
        .await;
    server.add_keys(absolute, &["sk-a-1", "sk-a-2"]).await;

    for (name, first_line) in [
        (
            "tunnel",
            format!("CONNECT localhost:{} HTTP/1.1", tls.port()),
        ),
        (
            "absolute",
            format!("POST {}/v1/chat/completions HTTP/1.1", plain.url()),
        ),
    ] {
        proxy.seen.lock().unwrap().clear();
        let (status, body) = chat(&server, name, &[]).await;
        assert_eq!(status, 500, "{name}: {body}");
        let body: Value = serde_json::from_str(&body).expect("json");
        let message = body["message"].as_str().expect("message");
        assert!(
            message.starts_with("proxy http://****:****@127.0.0.1:"),
            "{message}"
        );
        assert!(
            message.contains("407 Proxy Authentication Required"),
            "{message}"
        );
        let lines: Vec<_> = proxy.seen().into_iter().map(|s| s.request_line).collect();
        assert_eq!(
            lines,
            [first_line.clone(), first_line],
            "one try per attempt"
        );
    }
    assert_eq!(tls.request_count() + plain.request_count(), 0);
    server.stop().await;
    let attempts = logged_attempts(&server);
    assert_eq!(attempts.len(), 4);
    assert!(
        attempts
            .iter()
            .all(|(s, _, e)| *s == 500 && e.contains("407")),
        "{attempts:?}"
    );
    assert!(attempts.iter().all(|(_, _, e)| !e.contains(SECRET)));
    server.assert_logs_free_of(&[SECRET]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_proxy_urls_are_rejected_with_a_clear_message() {
    let server = Server::start().await;
    let bad = format!("ftp://frank:{SECRET}@proxy.example:21");
    let (status, body) = server
        .api("PUT", "/api/settings", Some(json!({"proxy_url": bad})))
        .await;
    assert_eq!(status, 400, "{body}");
    let message = body["message"].as_str().expect("message");
    assert!(
        message.contains("proxy_url") && message.contains("unsupported scheme"),
        "{message}"
    );
    assert!(!message.contains(SECRET), "{message}");

    let body = json!({
        "name": "g", "channel_type": "openai", "test_model": "m", "proxy_keys": PROXY_KEY,
        "upstreams": [{"url": "http://127.0.0.1:9", "weight": 1}],
        "config": {"proxy_url": "socks5://proxy.example:notaport"},
    });
    let (status, body) = server.api("POST", "/api/groups", Some(body)).await;
    assert_eq!(status, 400, "{body}");
    let message = body["message"].as_str().expect("message");
    assert!(message.contains("invalid host or port"), "{message}");
    server.assert_logs_free_of(&[SECRET]);
}

// ---------------------------------------------------------------------------------------------
// §2.9 redirects (v1.4.8).

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_307_keeps_method_body_and_credentials_on_the_same_host() {
    let mock = MockUpstream::start().await;
    let target = format!("{}/v1/chat/completions", mock.url());
    let redirector = Redirector::start(move |_| (307, location(target.clone()))).await;
    let server = Server::start().await;
    group(&server, "g", &redirector.url(), "sk-upstream-1", json!({})).await;

    for stream in [false, true] {
        mock.clear();
        let (status, body) = chat_with(&server, "g", &[], stream).await;
        assert_eq!(status, 200, "{body}");
        if stream {
            assert!(body.contains("data: [DONE]"), "{body}");
        }
        let sent = &mock.requests()[0];
        assert_eq!(
            (sent.method.as_str(), sent.path.as_str()),
            ("POST", "/v1/chat/completions")
        );
        assert_eq!(sent.json()["stream"], stream);
        // 127.0.0.1 on another port is the same host to v1: the key goes along.
        assert_eq!(sent.upstream_key().as_deref(), Some("sk-upstream-1"));
    }
    assert_eq!(redirector.seen().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_301_302_303_turn_post_into_get_without_body() {
    let mock = MockUpstream::start().await;
    let target = format!("{}/v1/models", mock.url());
    let redirector = Redirector::start(move |seen| {
        let status = seen
            .headers
            .iter()
            .find_map(|h| h.strip_prefix("x-redirect-status: "))
            .and_then(|s| s.parse().ok())
            .unwrap_or(302);
        (status, location(target.clone()))
    })
    .await;
    let server = Server::start().await;
    group(&server, "g", &redirector.url(), "sk-upstream-1", json!({})).await;

    for status in ["301", "302", "303"] {
        mock.clear();
        let (code, body) = chat(&server, "g", &[("x-redirect-status", status)]).await;
        assert_eq!(code, 200, "{status}: {body}");
        assert!(body.contains("\"object\":\"list\""), "{status}: {body}");
        let sent = &mock.requests()[0];
        assert_eq!(
            (sent.method.as_str(), sent.path.as_str()),
            ("GET", "/v1/models"),
            "{status}"
        );
        assert!(sent.body.is_empty(), "{status}");
        assert_eq!(sent.header("content-length"), None, "{status}");
    }
    let methods: Vec<_> = redirector.seen().into_iter().map(|s| s.method).collect();
    assert_eq!(methods, ["POST", "POST", "POST"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_host_redirect_strips_credentials_and_the_key_parameter() {
    let mock = MockUpstream::start().await;
    let port = mock.port();
    let target = format!("http://localhost:{port}/v1/chat/completions?key=leaked&keep=1");
    let redirector = Redirector::start(move |_| (307, location(target.clone()))).await;
    let server = Server::start().await;
    group(
        &server,
        "openai",
        &redirector.url(),
        "sk-openai-Secret-1",
        json!({}),
    )
    .await;
    let id = server
        .create_group("claude", "anthropic", &redirector.url(), json!({}))
        .await;
    server.add_keys(id, &["sk-ant-Secret-2"]).await;
    let extra = [("X-Auth-Token", "t0ken"), ("api-key", "azure-key")];

    let (status, body) = chat(&server, "openai", &extra).await;
    assert_eq!(status, 200, "{body}");
    let response = server
        .client
        .post(server.url("/proxy/claude/v1/messages"))
        .bearer_auth(PROXY_KEY)
        .timeout(WAIT)
        .json(&json!({"model": "claude-x", "max_tokens": 5,
                      "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 200);

    // Before the redirect, every credential was there.
    let has = |seen: &Seen, line: &str| seen.headers.iter().any(|h| h.eq_ignore_ascii_case(line));
    let first = &redirector.seen()[0];
    assert!(
        has(first, "authorization: Bearer sk-openai-Secret-1"),
        "{first:?}"
    );
    assert!(
        has(first, "x-auth-token: t0ken") && has(first, "api-key: azure-key"),
        "{first:?}"
    );
    let second = &redirector.seen()[1];
    assert!(has(second, "x-api-key: sk-ant-Secret-2"), "{second:?}");
    let sent = mock.requests();
    assert_eq!(sent.len(), 2);
    for request in &sent {
        assert_eq!(request.upstream_key(), None, "{request:?}");
        for name in [
            "authorization",
            "x-api-key",
            "api-key",
            "x-goog-api-key",
            "x-auth-token",
        ] {
            assert_eq!(
                request.header(name),
                None,
                "{name} crossed hosts: {request:?}"
            );
        }
        assert_eq!(request.path, "/v1/chat/completions?keep=1");
        assert_eq!(
            request.header("host"),
            Some(format!("localhost:{port}").as_str())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_loop_stops_after_10_redirects() {
    let redirector = Redirector::start(|seen| {
        let n: u32 = seen.target.trim_start_matches("/hop/").parse().unwrap_or(0);
        (302, location(format!("/hop/{}", n + 1)))
    })
    .await;
    let server = Server::start().await;
    let config = json!({"config": {"max_retries": 0}});
    group(&server, "g", &redirector.url(), "sk-upstream-1", config).await;

    let (status, body) = chat(&server, "g", &[]).await;
    assert_eq!(status, 500, "{body}");
    let body: Value = serde_json::from_str(&body).expect("json");
    let port = redirector.port;
    assert_eq!(
        body["message"],
        format!("GET \"http://127.0.0.1:{port}/hop/10\": stopped after 10 redirects")
    );
    let targets: Vec<_> = redirector.seen().into_iter().map(|s| s.target).collect();
    assert_eq!(
        targets.len(),
        11,
        "the request and 10 redirects: {targets:?}"
    );
    assert_eq!(targets[10], "/hop/10");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_go_through_the_same_proxy() {
    let mock = MockUpstream::start().await;
    let target = format!("{}/v1/chat/completions", mock.url());
    let redirector = Redirector::start(move |_| (308, location(target.clone()))).await;
    let proxy = HttpProxy::start(None).await;
    let server = Server::start().await;
    let config = json!({"config": {"proxy_url": proxy.url("")}});
    group(&server, "g", &redirector.url(), "sk-upstream-1", config).await;

    let (status, body) = within("proxied redirect", chat(&server, "g", &[])).await;
    assert_eq!(status, 200, "{body}");
    let lines: Vec<_> = proxy.seen().into_iter().map(|s| s.request_line).collect();
    assert_eq!(
        lines,
        [
            format!("POST {}/v1/chat/completions HTTP/1.1", redirector.url()),
            format!("POST {}/v1/chat/completions HTTP/1.1", mock.url()),
        ]
    );
    assert_eq!(
        mock.requests()[0].upstream_key().as_deref(),
        Some("sk-upstream-1")
    );
}
