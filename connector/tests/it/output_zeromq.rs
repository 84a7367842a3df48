//! `zeromq` (feature `zeromq`) against a peer socket of the test (`docs/reference/module-contract.md` §9): PULL for
//! `PUSH`, SUB for `PUB`, REP for `REQ`, ROUTER for `DEALER`, each on loopback. The module
//! connects by default over one persistent socket and binds with `bind: true`; it can be
//! built and delivers; a `REQ` serialises its requests (§2.2 rule 4).

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use serde_json::{Value, json};
use webhook_connector::output::{ErrorCategory, ErrorKind, Output, zeromq as zmq_out};
use zeromq::{
    PullSocket, RepSocket, RouterSocket, Socket, SocketEvent, SocketRecv, SocketSend, SubSocket,
    ZmqMessage,
};

use crate::sinks::{Entry, closed_port, delivery, payload};

const WAIT: Duration = Duration::from_secs(5);

/// Binds `socket` on a free loopback port; the endpoint the module should use.
async fn bind_any<S: Socket>(socket: &mut S) -> String {
    socket
        .bind("tcp://127.0.0.1:0")
        .await
        .expect("bind the peer")
        .to_string()
}

fn module(config: Value) -> Box<dyn Output> {
    Entry::new("zeromq", config).build(zmq_out::build)
}

/// The single frame of `msg` as JSON.
fn frame_json(msg: &ZmqMessage, index: usize) -> Value {
    serde_json::from_slice(msg.get(index).expect("frame")).expect("JSON frame")
}

/// Sends `d` until the module has a peer to hand it to (a peer connecting to a bound socket
/// registers asynchronously); fails after [`WAIT`].
async fn process_once_connected(out: &dyn Output, d: &webhook_connector::output::Delivery) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match out.process(d).await {
            Ok(()) => return,
            Err(e) if tokio::time::Instant::now() < deadline => {
                assert_eq!(e.kind, ErrorKind::Transient, "{e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("no peer within {WAIT:?}: {e}"),
        }
    }
}

/// PUSH connects by default, over one socket for every message.
#[tokio::test]
async fn push_connects_by_default_over_one_socket() {
    let mut pull = PullSocket::new();
    let mut events = pull.monitor();
    let endpoint = bind_any(&mut pull).await;
    let out = module(json!({"endpoint": endpoint, "socket_type": "PUSH"}));
    out.setup().await.unwrap();
    for i in 0..3u64 {
        out.process(&delivery(&format!("m{i}"), payload(i)))
            .await
            .unwrap();
    }
    for i in 0..3u64 {
        let msg = tokio::time::timeout(WAIT, pull.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(msg.len(), 1, "one frame per message");
        assert_eq!(frame_json(&msg, 0), payload(i));
    }
    let mut accepted = 0;
    while let Ok(event) = events.try_recv() {
        if matches!(event, SocketEvent::Accepted(..)) {
            accepted += 1;
        }
    }
    assert_eq!(accepted, 1, "three messages over one connection");
    out.teardown().await;
}

/// `bind: true` binds, and a PULL peer that connects receives the message.
#[tokio::test]
async fn bind_true_binds_and_a_connecting_peer_receives() {
    let endpoint = format!("tcp://127.0.0.1:{}", closed_port().await);
    let out = module(json!({"endpoint": endpoint, "socket_type": "PUSH", "bind": true}));
    out.setup().await.unwrap();
    let mut pull = PullSocket::new();
    tokio::time::timeout(WAIT, pull.connect(&endpoint))
        .await
        .unwrap()
        .unwrap();
    process_once_connected(out.as_ref(), &delivery("m_bind", payload(7))).await;
    let msg = tokio::time::timeout(WAIT, pull.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(frame_json(&msg, 0), payload(7));
    out.teardown().await;
}

/// `ipc://` endpoints work as well as `tcp://`.
#[tokio::test]
async fn ipc_endpoints_deliver() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("ipc://{}", dir.path().join("hooks.sock").display());
    let mut pull = PullSocket::new();
    pull.bind(&endpoint).await.unwrap();
    let out = module(json!({"endpoint": endpoint, "socket_type": "PUSH"}));
    out.setup().await.unwrap();
    out.process(&delivery("m_ipc", payload(9))).await.unwrap();
    let msg = tokio::time::timeout(WAIT, pull.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(frame_json(&msg, 0), payload(9));
}

/// §2.2 rule 4: concurrent calls on a `REQ` socket each get their own reply.
#[tokio::test]
async fn req_serialises_concurrent_messages_and_waits_for_each_reply() {
    let mut rep = RepSocket::new();
    let endpoint = bind_any(&mut rep).await;
    let peer = tokio::spawn(async move {
        let mut seen = Vec::new();
        for _ in 0..5 {
            let msg = rep.recv().await.unwrap();
            seen.push(frame_json(&msg, 0)["order"].as_u64().unwrap());
            rep.send(ZmqMessage::from("ok")).await.unwrap();
        }
        seen
    });
    let out: Arc<dyn Output> =
        Arc::from(module(json!({"endpoint": endpoint, "socket_type": "REQ"})));
    out.setup().await.unwrap();
    let calls = (0..5u64).map(|i| {
        let out = out.clone();
        async move { out.process(&delivery(&format!("m{i}"), payload(i))).await }
    });
    for result in join_all(calls).await {
        result.unwrap();
    }
    let mut seen = tokio::time::timeout(WAIT, peer).await.unwrap().unwrap();
    seen.sort_unstable();
    assert_eq!(seen, vec![0, 1, 2, 3, 4]);
}

/// A `REQ` whose peer never answers fails `Transient`/`timeout` after `timeout`.
#[tokio::test]
async fn req_without_a_reply_is_a_transient_timeout() {
    let mut rep = RepSocket::new();
    let endpoint = bind_any(&mut rep).await;
    let out = module(json!({"endpoint": endpoint, "socket_type": "REQ", "timeout": 0.5}));
    out.setup().await.unwrap();
    let err = out.process(&delivery("m", payload(0))).await.unwrap_err();
    assert_eq!(
        (err.kind, err.category),
        (ErrorKind::Transient, ErrorCategory::Timeout),
        "{err}"
    );
    // The request did reach the peer; it just did not answer.
    let msg = tokio::time::timeout(WAIT, rep.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(frame_json(&msg, 0), payload(0));
}

/// `PUB` (the default type) reaches a subscriber once its subscription has arrived.
#[tokio::test]
async fn pub_is_the_default_and_reaches_a_subscriber() {
    let mut sub = SubSocket::new();
    sub.subscribe("").await.unwrap();
    let endpoint = bind_any(&mut sub).await;
    let out = module(json!({"endpoint": endpoint}));
    out.setup().await.unwrap();
    // PUB drops frames until the subscription has travelled to it: publish until one arrives.
    let deadline = tokio::time::Instant::now() + WAIT;
    let msg = loop {
        out.process(&delivery("m_pub", payload(3))).await.unwrap();
        if let Ok(got) = tokio::time::timeout(Duration::from_millis(100), sub.recv()).await {
            break got.unwrap();
        }
        assert!(tokio::time::Instant::now() < deadline, "nothing received");
    };
    assert_eq!(frame_json(&msg, 0), payload(3));
}

/// `DEALER` to a ROUTER: the router sees the dealer's identity and the payload frame.
#[tokio::test]
async fn dealer_reaches_a_router() {
    let mut router = RouterSocket::new();
    let endpoint = bind_any(&mut router).await;
    let out = module(json!({"endpoint": endpoint, "socket_type": "DEALER"}));
    out.setup().await.unwrap();
    out.process(&delivery("m_dealer", payload(4)))
        .await
        .unwrap();
    let msg = tokio::time::timeout(WAIT, router.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(msg.len(), 2, "identity and payload");
    assert_eq!(frame_json(&msg, 1), payload(4));
}

/// Nothing listening: `setup` fails `Transient` after `timeout`, it does not hang.
#[tokio::test]
async fn a_closed_port_is_transient() {
    let endpoint = format!("tcp://127.0.0.1:{}", closed_port().await);
    let out = module(json!({"endpoint": endpoint, "socket_type": "PUSH", "timeout": 0.5}));
    let err = tokio::time::timeout(WAIT, out.setup())
        .await
        .expect("setup ends")
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Transient, "{err}");
    let err = out.process(&delivery("m", payload(0))).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Transient, "{err}");
}

/// A bound PUSH without any peer fails `Transient` (no peer to take the message).
#[tokio::test]
async fn a_bound_push_without_peers_is_transient() {
    let endpoint = format!("tcp://127.0.0.1:{}", closed_port().await);
    let out = module(json!({"endpoint": endpoint, "socket_type": "PUSH", "bind": true}));
    out.setup().await.unwrap();
    let err = out.process(&delivery("m", payload(0))).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Transient, "{err}");
    out.teardown().await;
}

#[test]
fn inproc_unknown_types_and_a_missing_endpoint_are_load_errors() {
    let cases = [
        (json!({"endpoint": "inproc://x"}), "module-config.endpoint"),
        (
            json!({"endpoint": "udp://127.0.0.1:5"}),
            "module-config.endpoint",
        ),
        (json!({}), "module-config.endpoint"),
        (
            json!({"endpoint": "tcp://127.0.0.1:5555", "socket_type": "ROUTER"}),
            "module-config.socket_type",
        ),
        (
            json!({"endpoint": "tcp://169.254.169.254:5555"}),
            "module-config.endpoint",
        ),
        (
            json!({"endpoint": "tcp://127.0.0.1:5555", "timeout": 0}),
            "module-config.timeout",
        ),
    ];
    for (config, path) in cases {
        let p = Entry::new("zeromq", config.clone()).refused(zmq_out::build);
        assert!(p.errors[0].contains(path), "{config}: {p:?}");
    }
}

/// With the feature on, the registry builds the module instead of the feature error.
#[test]
fn the_registry_builds_zeromq_with_the_feature() {
    let entry = Entry::new("zeromq", json!({"endpoint": "tcp://127.0.0.1:5555"}));
    let mut p = webhook_connector::config::Problems::default();
    let out = webhook_connector::output::registry::build(&entry.settings(), &mut p);
    assert!(out.is_some() && p.errors.is_empty(), "{p:?}");
}
