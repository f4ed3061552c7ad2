//! HTTPS: a client trusting only the mock's CA reaches `https://localhost:PORT`.

mod support;

use std::sync::Arc;

use mock_upstream::MockUpstream;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use support::RawClient;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

async fn connect(
    upstream: &MockUpstream,
    host: &str,
    ca_pem: &str,
) -> std::io::Result<TlsStream<TcpStream>> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(("127.0.0.1", upstream.port())).await?;
    let name = ServerName::try_from(host.to_owned()).unwrap();
    TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
}

#[tokio::test]
async fn https_with_the_mock_ca_as_the_only_root() {
    let upstream = MockUpstream::start_tls().await;
    assert_eq!(
        upstream.url(),
        format!("https://localhost:{}", upstream.port())
    );
    let ca_pem = upstream.ca_pem().expect("a TLS mock has a CA");
    assert!(ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));

    let stream = connect(&upstream, "localhost", &ca_pem)
        .await
        .expect("handshake");
    let mut client = RawClient::new(stream);
    let body = r#"{"model":"m","stream":true}"#;
    let streamed = client
        .exchange("/v1/chat/completions", &[("x-api-key", "sk-tls")], body)
        .await;
    assert_eq!(streamed.status, 200);
    assert_eq!(streamed.events().len(), 4);
    let whole = client
        .exchange("/v1/messages", &[], r#"{"model":"c"}"#)
        .await;
    assert_eq!(whole.json()["model"], "c", "keep-alive over TLS");
    assert_eq!(
        upstream.requests()[0].upstream_key().as_deref(),
        Some("sk-tls")
    );
}

#[tokio::test]
async fn certificate_also_covers_the_loopback_address() {
    let upstream = MockUpstream::start_tls().await;
    let ca_pem = upstream.ca_pem().unwrap();
    let stream = connect(&upstream, "127.0.0.1", &ca_pem)
        .await
        .expect("handshake by IP");
    let mut client = RawClient::new(stream);
    client.get("/v1/models", &[]).await;
    assert_eq!(client.read_response().await.status, 200);
}

#[tokio::test]
async fn another_mocks_ca_is_not_trusted() {
    let upstream = MockUpstream::start_tls().await;
    let other = MockUpstream::start_tls().await;
    let wrong_ca = other.ca_pem().unwrap();
    assert!(connect(&upstream, "localhost", &wrong_ca).await.is_err());
}

#[tokio::test]
async fn plain_mock_has_no_ca() {
    let upstream = MockUpstream::start().await;
    assert_eq!(upstream.ca_pem(), None);
    assert_eq!(
        upstream.url(),
        format!("http://127.0.0.1:{}", upstream.port())
    );
}
