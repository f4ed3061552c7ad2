//! A throwaway PKI for HTTPS tests: a fresh CA per server, and a leaf it signs for `localhost`,
//! `127.0.0.1` and `::1`. The leaf is a separate certificate with `CA:FALSE` because rustls
//! (webpki) rejects a CA certificate presented as the end entity.

use std::io;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::TlsAcceptor;

/// The server side of the PKI, plus the CA a client must trust.
pub(crate) struct Identity {
    pub(crate) ca_pem: String,
    pub(crate) acceptor: TlsAcceptor,
}

impl Identity {
    pub(crate) fn generate() -> io::Result<Identity> {
        let failed = |what: &str| {
            let what = what.to_owned();
            move |e: rcgen::Error| {
                io::Error::other(format!("mock upstream TLS: cannot {what}: {e}"))
            }
        };
        let ca_key = KeyPair::generate().map_err(failed("generate the CA key"))?;
        let ca = CertifiedIssuer::self_signed(ca_params(), ca_key)
            .map_err(failed("self-sign the CA"))?;
        let leaf_key = KeyPair::generate().map_err(failed("generate the leaf key"))?;
        let leaf = leaf_params()
            .map_err(failed("build the leaf parameters"))?
            .signed_by(&leaf_key, &ca)
            .map_err(failed("sign the leaf"))?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(|builder| {
                builder
                    .with_no_client_auth()
                    .with_single_cert(vec![leaf.der().clone(), ca.der().clone()], key)
            })
            .map_err(|e| {
                io::Error::other(format!(
                    "mock upstream TLS: cannot build the server config: {e}"
                ))
            })?;
        // Only HTTP/1.1 is served; a client offering h2 as well gets http/1.1.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Identity {
            ca_pem: ca.pem(),
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "mock-upstream test CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

fn leaf_params() -> Result<CertificateParams, rcgen::Error> {
    let names = ["localhost", "127.0.0.1", "::1"].map(String::from);
    let mut params = CertificateParams::new(names)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}
