//! TLS to the relay: a private CA or `verify_ssl: false` works for the stream and for the HTTP
//! acks alike. Scripted-peer tests behind a TLS front; end-to-end tests against the real
//! relay live in tests/ and come with the relay.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use webhook_connector::config::Protocol;
use webhook_connector::health::ConnState;

use crate::support::{
    AckSeen, Peer, Target, accept_ws, connected_frame, connector_config, eventually,
    handle_http_ack, start_sse, webhook_frame,
};

const LONG: Duration = Duration::from_secs(20);

struct Pki {
    ca_pem: String,
    server: rustls::ServerConfig,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from(cert.der().to_vec())],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
    .unwrap();
    Pki {
        ca_pem: ca.pem(),
        server,
    }
}

/// Terminates TLS and forwards the plain bytes to `backend`.
async fn tls_front(server: rustls::ServerConfig, backend: SocketAddr) -> SocketAddr {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut plain) = TcpStream::connect(backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    addr
}

/// SSE (v2) with one webhook, and HTTP acks recorded.
async fn sse_peer(acks: Arc<Mutex<Vec<AckSeen>>>) -> Peer {
    Peer::start(move |mut stream, req| {
        let acks = acks.clone();
        async move {
            if req.method == "POST" {
                handle_http_ack(stream, &req, &acks).await;
                return;
            }
            if !req.path().ends_with("/sse") {
                crate::support::respond(&mut stream, 404, &[], "").await;
                return;
            }
            start_sse(&mut stream, true).await;
            let text = format!(
                "event: connected\ndata: {}\n\nevent: webhook\ndata: {}\n\n",
                connected_frame("sse_tls", 20),
                webhook_frame("msg_tls", 1, b"{\"ok\":true}", "application/json")
            );
            let _ = stream.write_all(text.as_bytes()).await;
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if stream.write_all(b": ping\n\n").await.is_err() {
                    return;
                }
            }
        }
    })
    .await
}

#[tokio::test]
async fn sse_acks_use_the_private_ca_of_the_stream_r80() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, &pki.ca_pem).unwrap();
    let target = Target::start().await;
    let acks = Arc::new(Mutex::new(Vec::new()));
    let peer = sse_peer(acks.clone()).await;
    let front = tls_front(pki.server, peer.addr).await;
    let mut config = connector_config(front, &target.url("/hook"));
    config.cloud_url = format!("https://{front}");
    config.channels[0].protocol = Protocol::Sse;
    config.tls.ca_cert_path = Some(ca_path);
    let shutdown = CancellationToken::new();
    let handle = webhook_connector::start(config, shutdown.clone())
        .await
        .unwrap();
    assert!(eventually(LONG, || !acks.lock().unwrap().is_empty()).await);
    let ack = acks.lock().unwrap()[0].clone();
    assert_eq!(
        (ack.message_id.as_str(), ack.status.as_str()),
        ("msg_tls", "ack")
    );
    assert_eq!(ack.connection_id.as_deref(), Some("sse_tls"));
    shutdown.cancel();
    handle.wait().await;
}

#[tokio::test]
async fn sse_acks_work_with_verify_ssl_false_r80() {
    let pki = pki();
    let target = Target::start().await;
    let acks = Arc::new(Mutex::new(Vec::new()));
    let peer = sse_peer(acks.clone()).await;
    let front = tls_front(pki.server, peer.addr).await;
    let mut config = connector_config(front, &target.url("/hook"));
    config.cloud_url = format!("https://{front}");
    config.channels[0].protocol = Protocol::Sse;
    config.tls.verify = false;
    let shutdown = CancellationToken::new();
    let handle = webhook_connector::start(config, shutdown.clone())
        .await
        .unwrap();
    assert!(eventually(LONG, || !acks.lock().unwrap().is_empty()).await);
    shutdown.cancel();
    handle.wait().await;
}

#[tokio::test]
async fn untrusted_certificate_is_refused_when_verifying() {
    let pki = pki();
    let target = Target::start().await;
    let acks = Arc::new(Mutex::new(Vec::new()));
    let peer = sse_peer(acks.clone()).await;
    let front = tls_front(pki.server, peer.addr).await;
    let mut config = connector_config(front, &target.url("/hook"));
    config.cloud_url = format!("https://{front}");
    config.channels[0].protocol = Protocol::Sse;
    let shutdown = CancellationToken::new();
    let handle = webhook_connector::start(config, shutdown.clone())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_ne!(handle.states[0].state(), ConnState::Connected);
    assert!(acks.lock().unwrap().is_empty());
    assert_eq!(target.hits("/hook"), 0);
    shutdown.cancel();
    handle.wait().await;
}

#[tokio::test]
async fn websocket_over_tls_uses_the_private_ca() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, &pki.ca_pem).unwrap();
    let target = Target::start().await;
    let frames = Arc::new(Mutex::new(Vec::<String>::new()));
    let f = frames.clone();
    let peer = Peer::start(move |stream, req| {
        let f = f.clone();
        async move {
            let mut ws = accept_ws(stream, &req, true).await;
            let _ = ws
                .send(Message::Text(connected_frame("wsc_tls", 20).into()))
                .await;
            let hook = webhook_frame("msg_wss", 1, b"{}", "application/json");
            let _ = ws.send(Message::Text(hook.into())).await;
            while let Some(Ok(m)) = ws.next().await {
                if let Message::Text(t) = m {
                    f.lock().unwrap().push(t.to_string());
                }
            }
        }
    })
    .await;
    let front = tls_front(pki.server, peer.addr).await;
    let mut config = connector_config(front, &target.url("/hook"));
    config.cloud_url = format!("https://{front}");
    config.channels[0].protocol = Protocol::WebSocket;
    config.tls.ca_cert_path = Some(ca_path);
    let shutdown = CancellationToken::new();
    let handle = webhook_connector::start(config, shutdown.clone())
        .await
        .unwrap();
    assert!(
        eventually(LONG, || frames
            .lock()
            .unwrap()
            .iter()
            .any(|t| t.contains("\"ack\"") && t.contains("msg_wss")))
        .await
    );
    shutdown.cancel();
    handle.wait().await;
}
