//! Servers a test starts for itself (a Mosquitto, nats-server or redis-server with TLS or
//! authentication) and the certificates they use, made at test time with `rcgen`. The process
//! is killed and the temporary directory removed when the handle is dropped, also when the test
//! panics.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use webhook_connector::config::TlsConfig;

use crate::sinks::closed_port;

/// A private CA with a server certificate (for `127.0.0.1` and `localhost`) and a client
/// certificate signed by it, as PEM files in a temporary directory: `ca.pem`, `server.pem`,
/// `server.key`, `client.pem`, `client.key`.
pub struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // Distinct subject names: OpenSSL takes a certificate whose issuer equals its subject
        // (rcgen's default name for all) for a self-signed one.
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "webhook-connect test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        for (name, sans) in [
            (
                "server",
                vec!["127.0.0.1".to_owned(), "localhost".to_owned()],
            ),
            ("client", vec!["webhook-connector".to_owned()]),
        ] {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(sans).unwrap();
            params
                .distinguished_name
                .push(DnType::CommonName, format!("webhook-connect test {name}"));
            let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
            std::fs::write(dir.path().join(format!("{name}.pem")), cert.pem()).unwrap();
            std::fs::write(dir.path().join(format!("{name}.key")), key.serialize_pem()).unwrap();
        }
        Pki { dir }
    }

    /// A server certificate signed by nobody (`server.pem`, `server.key`; `ca.pem` is the
    /// same certificate, for servers that insist on a CA file).
    pub fn self_signed() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        for name in ["server.pem", "ca.pem"] {
            std::fs::write(dir.path().join(name), cert.pem()).unwrap();
        }
        std::fs::write(dir.path().join("server.key"), key.serialize_pem()).unwrap();
        Pki { dir }
    }

    /// The path of one of the files, as a string for configuration values.
    pub fn file(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A rustls client configuration trusting this CA and presenting the client certificate.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        webhook_connector::tls::client_config(&TlsConfig {
            verify: true,
            ca_cert_path: Some(self.path("ca.pem")),
            client_cert: Some((self.path("client.pem"), self.path("client.key"))),
        })
        .unwrap()
    }
}

/// A rustls client configuration that accepts any server certificate.
pub fn insecure_client_config() -> Arc<rustls::ClientConfig> {
    webhook_connector::tls::client_config(&TlsConfig {
        verify: false,
        ca_cert_path: None,
        client_cert: None,
    })
    .unwrap()
}

/// The first of `candidates` that exists (absolute paths), else the bare `name` from `PATH`.
pub fn binary(name: &str, candidates: &[&str]) -> String {
    candidates
        .iter()
        .find(|b| Path::new(b).exists())
        .map_or_else(|| name.to_owned(), |b| (*b).to_owned())
}

/// A server process started by the test, killed on drop.
pub struct PrivateServer {
    child: std::process::Child,
    pub port: u16,
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl PrivateServer {
    /// A free loopback port for the server to listen on.
    pub async fn free_port() -> u16 {
        closed_port().await
    }

    /// Starts `command` and waits until it listens on `port` (at most 10 s).
    pub async fn start(mut command: Command, port: u16) -> PrivateServer {
        let what = format!("{command:?}");
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let mut server = PrivateServer { child, port };
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("{what} exited with {status} before listening on {port}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{what} did not listen on port {port}");
    }
}
