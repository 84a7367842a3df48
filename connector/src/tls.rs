//! One TLS configuration (rustls) for every connection to the relay: the WebSocket, the SSE
//! stream, long-polls and the HTTP acks all use it, so a private CA or `verify_ssl: false` works
//! for acks too. Output modules that speak TLS themselves (`mqtt`) build theirs here
//! too, from their own keys ([`client_config_for`]).
//!
//! ring is the only rustls crypto provider in the build; drivers that call
//! `rustls::ClientConfig::builder()` (redis, async-nats) use the process default, which
//! [`install_default_provider`] sets to ring once, whatever other crates enable.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// TLS settings for every connection to the relay (streams and acks alike, R-80).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// `verify_ssl` (default true).
    pub verify: bool,
    /// `ca_cert_path`: extra trusted CA bundle (PEM).
    pub ca_cert_path: Option<PathBuf>,
    /// `client_cert_path` + `client_key_path`: mTLS identity (both or neither).
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            verify: true,
            ca_cert_path: None,
            client_cert: None,
        }
    }
}

/// Installs ring as the process-wide rustls provider, once; a no-op when one is installed.
pub fn install_default_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Builds the rustls client configuration described by `tls`.
pub fn client_config(tls: &TlsConfig) -> Result<Arc<ClientConfig>, String> {
    client_config_for(tls, ["ca_cert_path", "client_cert_path", "client_key_path"])
}

/// As [`client_config`], naming the CA, certificate and key settings `keys` in its errors.
pub fn client_config_for(tls: &TlsConfig, keys: [&str; 3]) -> Result<Arc<ClientConfig>, String> {
    let [ca_key, cert_key, key_key] = keys;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?;
    let builder = if tls.verify {
        let mut roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        if let Some(path) = &tls.ca_cert_path {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("{ca_key}: cannot read {}: {e}", path.display()))?;
            let mut added = 0;
            for cert in certs {
                let cert =
                    cert.map_err(|e| format!("{ca_key}: invalid PEM in {}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("{ca_key}: unusable certificate: {e}"))?;
                added += 1;
            }
            if added == 0 {
                return Err(format!("{ca_key}: no certificate in {}", path.display()));
            }
        }
        builder.with_root_certificates(roots)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
    };
    let config = match &tls.client_cert {
        None => builder.with_no_client_auth(),
        Some((cert_path, key_path)) => {
            let certs = CertificateDer::pem_file_iter(cert_path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("{cert_key}: cannot read {}: {e}", cert_path.display()))?;
            let key = PrivateKeyDer::from_pem_file(key_path)
                .map_err(|e| format!("{key_key}: cannot read {}: {e}", key_path.display()))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| format!("client certificate rejected: {e}"))?
        }
    };
    Ok(Arc::new(config))
}

/// `verify_ssl: false`: accepts any server certificate (signatures are still checked).
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
