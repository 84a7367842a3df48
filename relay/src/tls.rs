//! TLS on the relay's listeners (`docs/reference/config-formats.md` §2.1: `server.tls_cert_file` and
//! `server.tls_key_file`, both or neither). The same certificate serves the main, admin and
//! metrics listeners. Each handshake runs in its connection's own task, bounded by the header
//! read timeout ([`crate::server`]), so a slow or silent client never holds up the accept loop.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// Reads the PEM certificate chain and private key into a TLS acceptor. The error names the
/// file and what is wrong with it (never key material).
pub fn acceptor(cert_file: &str, key_file: &str) -> Result<TlsAcceptor, String> {
    let certs = CertificateDer::pem_file_iter(cert_file)
        .map_err(|e| format!("server.tls_cert_file: cannot read \"{cert_file}\": {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("server.tls_cert_file: \"{cert_file}\": {e}"))?;
    if certs.is_empty() {
        return Err(format!(
            "server.tls_cert_file: \"{cert_file}\" holds no PEM certificate"
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| {
        format!("server.tls_key_file: cannot read a PEM private key from \"{key_file}\": {e}")
    })?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("server.tls_cert_file: {e}"))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| format!("server.tls_key_file: does not fit the certificate: {e}"))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
