//! The light modules delivering for real (`docs/reference/module-contract.md` §3.1–§3.4, §9): `log` output captured,
//! `save_to_disk` files read back, `http_webhook` and `websocket` against in-process peers that
//! record what arrived (R-89, R-97, R-110).

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Map, Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use webhook_connect_protocol::WebhookMessage;
use webhook_connector::config::Problems;
use webhook_connector::output::shared::SharedClients;
use webhook_connector::output::{
    Delivery, ErrorKind, ModuleSettings, Output, log as log_module, registry,
};

use crate::support::read_request;

fn settings<'a>(
    module: &'static str,
    config: &'a Map<String, Value>,
    webhook: &'a Map<String, Value>,
    outbound_strict: bool,
) -> ModuleSettings<'a> {
    ModuleSettings {
        module,
        path: "webhooks.json: t".into(),
        module_config: config,
        connection_name: None,
        connection: None,
        webhook,
        shared: SharedClients::new(),
        outbound_strict,
    }
}

fn build(module: &'static str, config: Value) -> Result<Box<dyn Output>, Problems> {
    build_with_policy(module, config, false)
}

/// [`build`] under `outbound_policy: strict` when `strict`.
fn build_with_policy(
    module: &'static str,
    config: Value,
    strict: bool,
) -> Result<Box<dyn Output>, Problems> {
    let config = config.as_object().cloned().unwrap_or_default();
    let webhook = Map::new();
    let mut p = Problems::default();
    match registry::build(&settings(module, &config, &webhook, strict), &mut p) {
        Some(o) if p.errors.is_empty() => Ok(o),
        _ => Err(p),
    }
}

fn delivery(id: &str, payload: Value) -> Delivery {
    let msg: WebhookMessage = serde_json::from_value(json!({
        "message_id": id, "webhook_id": "orders", "sequence": 3,
        "headers": {"Content-Type": "application/json", "X-Api-Key": "k-secret", "X-Trace": "t1"},
        "payload": payload
    }))
    .unwrap();
    Delivery::from_message(&msg, "orders")
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn log_prints_one_json_line_per_message_and_redacts_r110() {
    let out = Captured::default();
    let config = Map::new();
    let webhook = Map::new();
    let mut p = Problems::default();
    let log = log_module::build_with_writer(
        &settings("log", &config, &webhook, false),
        &mut p,
        Box::new(out.clone()),
    )
    .unwrap();
    log.process(&delivery(
        "msg_1",
        json!({"user": "ann", "password": "hunter2"}),
    ))
    .await
    .unwrap();
    log.process(&delivery("msg_2", json!([1, 2])))
        .await
        .unwrap();
    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    let first: Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(first["message_id"], "msg_1");
    assert_eq!(first["webhook_id"], "orders");
    assert_eq!(first["payload"]["user"], "ann");
    assert_eq!(first["payload"]["password"], "[REDACTED]");
    assert_eq!(first["headers"]["x-api-key"], "[REDACTED]");
    assert_eq!(first["headers"]["x-trace"], "t1");
    assert!(!text.contains("hunter2") && !text.contains("k-secret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn save_to_disk_writes_json_and_a_redelivery_rewrites_the_same_file_r97() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_str().unwrap();
    let out = build("save_to_disk", json!({"base_dir": base, "path": "out"})).unwrap();
    out.setup().await.unwrap();
    let d = delivery("msg_1", json!({"order": 7}));
    out.process(&d).await.unwrap();
    out.process(&d).await.unwrap();
    let files: Vec<_> = std::fs::read_dir(dir.path().join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(files, vec!["msg_1.json"], "one file, no temporaries left");
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("out/msg_1.json")).unwrap())
            .unwrap();
    assert_eq!(written, json!({"order": 7}));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("out/msg_1.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn save_to_disk_honours_pattern_headers_and_append_r97() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_str().unwrap();
    let out = build(
        "save_to_disk",
        json!({"base_dir": base, "include_headers": true, "filename_pattern": "{webhook_id}-{sequence}.json"}),
    )
    .unwrap();
    out.process(&delivery("msg_1", json!({"a": 1})))
        .await
        .unwrap();
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("orders-3.json")).unwrap())
            .unwrap();
    assert_eq!(v["message_id"], "msg_1");
    assert_eq!(v["headers"]["x-trace"], "t1");
    assert_eq!(v["payload"], json!({"a": 1}));

    let log = build(
        "save_to_disk",
        json!({"base_dir": base, "path": "log/all.jsonl", "append": true, "format": "jsonl"}),
    )
    .unwrap();
    log.setup().await.unwrap();
    for i in 0..3 {
        log.process(&delivery(&format!("m{i}"), json!({"i": i})))
            .await
            .unwrap();
    }
    let text = std::fs::read_to_string(dir.path().join("log/all.jsonl")).unwrap();
    let ids: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["message_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(ids, ["m0", "m1", "m2"]);
}

#[test]
fn save_to_disk_refuses_escapes_and_system_directories() {
    for (config, path) in [
        (
            json!({"path": "../x", "base_dir": "/tmp"}),
            "module-config.path",
        ),
        (
            json!({"path": "%2e%2e/x", "base_dir": "/tmp"}),
            "module-config.path",
        ),
        (json!({"base_dir": "/etc"}), "module-config.base_dir"),
        (
            json!({"base_dir": "/tmp", "append": true}),
            "module-config.append",
        ),
        (
            json!({"base_dir": "/tmp", "filename_pattern": "a/{message_id}"}),
            "module-config.filename_pattern",
        ),
    ] {
        let p = build("save_to_disk", config.clone())
            .err()
            .unwrap_or_else(|| panic!("{config} accepted"));
        assert!(
            p.errors
                .iter()
                .any(|e| e.starts_with(&format!("webhooks.json: t.{path}:"))),
            "{config}: {:?}",
            p.errors
        );
    }
}

/// A keep-alive HTTP peer: records bodies and counts connections; answers `status`.
async fn http_peer(
    statuses: Vec<u16>,
) -> (String, Arc<Mutex<Vec<(String, Vec<u8>)>>>, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let conns = Arc::new(AtomicUsize::new(0));
    let statuses = Arc::new(Mutex::new(statuses.into_iter().rev().collect::<Vec<_>>()));
    let (s, c) = (seen.clone(), conns.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            c.fetch_add(1, Ordering::SeqCst);
            let (s, statuses) = (s.clone(), statuses.clone());
            tokio::spawn(async move {
                while let Some(req) = read_request(&mut stream).await {
                    let ct = req.header("content-type").unwrap_or("").to_owned();
                    s.lock().unwrap().push((ct, req.body.clone()));
                    let status = statuses.lock().unwrap().pop().unwrap_or(200);
                    let out = format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nretry-after: 3\r\n\r\n"
                    );
                    if stream.write_all(out.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, seen, conns)
}

#[tokio::test]
async fn http_webhook_delivers_over_one_pooled_connection_r89() {
    let (url, seen, conns) = http_peer(Vec::new()).await;
    let out = build(
        "http_webhook",
        json!({"url": url, "headers": {"X-Static": "1"}}),
    )
    .unwrap();
    out.setup().await.unwrap();
    for i in 0..5 {
        out.process(&delivery(&format!("m{i}"), json!({"i": i})))
            .await
            .unwrap();
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 5);
    assert_eq!(
        serde_json::from_slice::<Value>(&seen[4].1).unwrap(),
        json!({"i": 4})
    );
    assert_eq!(seen[0].0, "application/json");
    assert_eq!(
        conns.load(Ordering::SeqCst),
        1,
        "one pooled connection for five messages"
    );
}

#[tokio::test]
async fn http_webhook_maps_statuses_to_error_kinds() {
    let (url, _, _) = http_peer(vec![503, 422, 301]).await;
    let out = build("http_webhook", json!({"url": url})).unwrap();
    let d = delivery("m", json!({}));
    let e = out.process(&d).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Transient);
    assert_eq!(e.retry_after, Some(std::time::Duration::from_secs(3)));
    let e = out.process(&d).await.unwrap_err();
    assert_eq!(
        (e.kind, e.message.as_str()),
        (ErrorKind::Permanent, "target returned 422")
    );
    assert_eq!(
        out.process(&d).await.unwrap_err().kind,
        ErrorKind::Permanent,
        "redirects are not followed"
    );
    // A closed port is a transient connection error.
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let out = build("http_webhook", json!({"url": format!("http://{closed}/x")})).unwrap();
    assert_eq!(
        out.process(&d).await.unwrap_err().kind,
        ErrorKind::Transient
    );
}

#[test]
fn http_webhook_refuses_metadata_endpoints_and_bad_schemes() {
    let p = build(
        "http_webhook",
        json!({"url": "http://169.254.169.254/latest"}),
    )
    .err()
    .unwrap();
    assert!(
        p.errors[0].contains("module-config.url") && p.errors[0].contains("metadata"),
        "{p:?}"
    );
    assert!(build("http_webhook", json!({"url": "ftp://x/"})).is_err());
    assert!(
        build(
            "http_webhook",
            json!({"url": "http://169.254.169.254/", "allowed_hosts": ["169.254.169.254"]})
        )
        .is_ok()
    );
    let p = build(
        "http_webhook",
        json!({"url": "http://127.0.0.1/", "surprise": 1}),
    )
    .map(|_| ())
    .err();
    assert!(p.is_none(), "unknown keys are warnings only");
}

/// `docs/reference/module-contract.md` §2.3 and R-136: `127.1` is no address literal to a naive check, but HTTP
/// clients read it as 127.0.0.1; under `strict` it is refused as that address. Listed in
/// `allowed_hosts`, or under the permissive policy, it is delivered to. (Host names that
/// resolve to a refused address are refused at connect time: `config::outbound` tests that
/// resolver inside a real HTTP client.)
#[tokio::test]
async fn http_webhook_under_strict_judges_numeric_hosts_by_their_address_r136() {
    let (url, seen, _) = http_peer(Vec::new()).await;
    let aliased = url.replace("127.0.0.1", "127.1");
    let d = delivery("m", json!({"n": 1}));
    let p = build_with_policy("http_webhook", json!({"url": aliased}), true)
        .err()
        .expect("refused at load");
    assert!(
        p.errors[0].contains("module-config.url") && p.errors[0].contains("strict"),
        "{p:?}"
    );
    let allowed = json!({"url": aliased, "allowed_hosts": ["127.1"]});
    build_with_policy("http_webhook", allowed, true)
        .unwrap()
        .process(&d)
        .await
        .unwrap();
    build_with_policy("http_webhook", json!({"url": aliased}), false)
        .unwrap()
        .process(&d)
        .await
        .unwrap();
    assert_eq!(seen.lock().unwrap().len(), 2);
}

/// A WebSocket peer: counts connections, records text frames, answers each with `ok` when
/// `reply`.
async fn ws_peer(reply: bool) -> (String, Arc<Mutex<Vec<String>>>, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/sink", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let conns = Arc::new(AtomicUsize::new(0));
    let (s, c) = (seen.clone(), conns.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            c.fetch_add(1, Ordering::SeqCst);
            let s = s.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if let Message::Text(t) = msg {
                        s.lock().unwrap().push(t.to_string());
                        if reply && ws.send(Message::Text("ok".into())).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (url, seen, conns)
}

#[tokio::test]
async fn websocket_delivers_over_one_persistent_connection_r89() {
    let (url, seen, conns) = ws_peer(false).await;
    let out = build("websocket", json!({"url": url, "include_headers": true})).unwrap();
    out.setup().await.unwrap();
    for i in 0..3 {
        out.process(&delivery(&format!("m{i}"), json!({"i": i})))
            .await
            .unwrap();
    }
    let ok = crate::support::eventually(std::time::Duration::from_secs(5), || {
        seen.lock().unwrap().len() == 3
    })
    .await;
    assert!(ok, "three frames arrived");
    let first: Value = serde_json::from_str(&seen.lock().unwrap()[0]).unwrap();
    assert_eq!(first["message_id"], "m0");
    assert_eq!(first["payload"], json!({"i": 0}));
    assert_eq!(first["headers"]["x-trace"], "t1");
    assert_eq!(conns.load(Ordering::SeqCst), 1);
    out.teardown().await;
}

#[tokio::test]
async fn websocket_waits_for_a_response_when_asked() {
    let (url, seen, _) = ws_peer(true).await;
    let out = build(
        "websocket",
        json!({"url": url, "wait_for_response": true, "format": "raw"}),
    )
    .unwrap();
    out.process(&delivery("m1", json!({"x": 1}))).await.unwrap();
    // The response arrived before process returned, so the frame is already recorded.
    assert_eq!(seen.lock().unwrap().as_slice(), [r#"{"x":1}"#]);
    // A peer that never answers: transient timeout.
    let (silent, _, _) = ws_peer(false).await;
    let out = build(
        "websocket",
        json!({"url": silent, "wait_for_response": true, "timeout": 0.2}),
    )
    .unwrap();
    assert_eq!(
        out.process(&delivery("m2", json!({})))
            .await
            .unwrap_err()
            .kind,
        ErrorKind::Transient
    );
}
