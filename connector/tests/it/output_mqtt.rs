//! `mqtt` against a real Mosquitto (`TEST_MQTT_URL`, default `mqtt://127.0.0.1:1883`): a
//! subscriber receives what QoS 0, 1 and 2 publish, concurrent instances with generated client
//! ids stay connected, topics are checked at load, a connection that breaks fails the
//! waiting publish `Transient`, and refused credentials (a Mosquitto with a password file,
//! started by the test) are `Unavailable`. TLS: Mosquittos with a TLS listener and certificates
//! made by the test; messages are read back over TLS. Each of these runs once per protocol
//! version (`v311::…` and `v5::…`, see [`per_version!`]). MQTT 5 reason codes: Mosquittos
//! started by the test with an ACL (0x87 in `PUBACK` and `PUBREC`), a Maximum Packet Size and a
//! `message_size_limit`.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use serde_json::{Value, json};
use webhook_connector::output::shared::SharedClients;
use webhook_connector::output::{ErrorCategory, ErrorKind, Output, OutputError, mqtt};

use crate::private_server::{Pki, PrivateServer, binary, insecure_client_config};
use crate::sinks::{Entry, closed_port, delivery, env_or, payload, require_server, unique};

/// Runs each named behaviour, an `async fn(version: Option<&str>)`, as one test per protocol
/// version: `v311::<name>` without `mqtt_version` (3.1.1 is the default) and `v5::<name>` with
/// `mqtt_version: "5.0"`.
macro_rules! per_version {
    ($($behaviour:ident),* $(,)?) => {
        mod v311 {
            $(#[tokio::test]
            async fn $behaviour() {
                super::$behaviour(None).await;
            })*
        }
        mod v5 {
            $(#[tokio::test]
            async fn $behaviour() {
                super::$behaviour(Some("5.0")).await;
            })*
        }
    };
}

per_version!(
    each_qos_reaches_a_subscriber,
    concurrent_instances_with_generated_client_ids_stay_connected,
    a_closed_port_is_transient_connection,
    a_connection_that_breaks_fails_the_waiting_publish_transiently,
    refused_credentials_are_unavailable_and_good_ones_deliver,
    tls_with_a_private_ca_and_a_client_certificate_is_read_back_over_tls,
    an_untrusted_server_certificate_or_a_missing_client_certificate_is_unavailable,
    tls_insecure_accepts_a_self_signed_certificate_that_tls_alone_refuses,
);

/// `connection` with `mqtt_version` set to `version` (left out for `None`).
fn versioned(mut connection: Value, version: Option<&str>) -> Value {
    if let Some(v) = version {
        connection["mqtt_version"] = json!(v);
    }
    connection
}

/// A connection entry for a broker on loopback `port`.
fn local(port: u16, version: Option<&str>) -> Value {
    versioned(
        json!({"type": "mqtt", "host": "127.0.0.1", "port": port}),
        version,
    )
}

fn host_port() -> (String, u16) {
    let url = env_or("TEST_MQTT_URL", "mqtt://127.0.0.1:1883");
    let hostport = url
        .split("://")
        .nth(1)
        .unwrap_or("127.0.0.1:1883")
        .trim_end_matches('/');
    let (host, port) = hostport.split_once(':').unwrap_or((hostport, "1883"));
    (host.to_owned(), port.parse().unwrap_or(1883))
}

/// The connection entry of the shared broker.
fn connection(version: Option<&str>) -> Value {
    let (host, port) = host_port();
    versioned(json!({"type": "mqtt", "host": host, "port": port}), version)
}

/// A subscriber on `topic`; returns the receiver of message bodies.
async fn subscribe(topic: &str) -> tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>)> {
    let (host, port) = host_port();
    require_server("TEST_MQTT_URL", &format!("{host}:{port}")).await;
    subscribe_with(MqttOptions::new(unique("sub"), host, port), topic).await
}

/// A subscriber on `topic` connected with `options`.
async fn subscribe_with(
    options: MqttOptions,
    topic: &str,
) -> tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>)> {
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    client.subscribe(topic, QoS::AtLeastOnce).await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
    let mut subscribed_tx = Some(subscribed_tx);
    tokio::spawn(async move {
        let _client = client;
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(t) = subscribed_tx.take() {
                        let _ = t.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send((p.topic.clone(), p.payload.to_vec()));
                }
                Ok(_) => {}
                Err(e) => {
                    eprintln!("test subscriber: {e}");
                    return;
                }
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(5), subscribed)
        .await
        .unwrap()
        .unwrap();
    rx
}

async fn next(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>)>,
) -> (String, Vec<u8>) {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("message within 5 s")
        .unwrap()
}

/// Publishes a message with payload `n` through `out` and checks that `rx` receives it on
/// `topic`.
async fn published_and_read_back(
    out: &dyn Output,
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>)>,
    topic: &str,
    n: u64,
) {
    out.process(&delivery(&format!("msg_{n}"), payload(n)))
        .await
        .unwrap();
    let (t, body) = next(rx).await;
    assert_eq!(t, topic);
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap(), payload(n));
}

/// QoS 0 (written), 1 (`PUBACK`) and 2 (`PUBCOMP`): each message reaches a subscriber.
async fn each_qos_reaches_a_subscriber(version: Option<&str>) {
    let topic = format!("wc/{}", unique("q"));
    let mut rx = subscribe(&topic).await;
    for qos in 0..=2 {
        let entry = Entry::new("mqtt", json!({"topic": topic, "qos": qos}))
            .connection("broker", connection(version));
        let out = entry.build(mqtt::build);
        out.setup().await.unwrap();
        published_and_read_back(out.as_ref(), &mut rx, &topic, qos).await;
        out.teardown().await;
    }
}

#[tokio::test]
async fn prefix_shelly_format_and_qos_0_and_2() {
    let topic = format!("wc/{}", unique("s"));
    let mut rx = subscribe(&format!("{topic}/#")).await;
    for qos in [0, 2] {
        let entry = Entry::new(
            "mqtt",
            json!({"topic_prefix": topic, "topic": "dev", "qos": qos,
                   "shelly_gen2_format": true, "device_id": "shelly-1"}),
        )
        .connection("broker", connection(None));
        let out = entry.build(mqtt::build);
        out.process(&delivery("m", json!({"on": true})))
            .await
            .unwrap();
        let (t, body) = next(&mut rx).await;
        assert_eq!(t, format!("{topic}/dev"));
        assert_eq!(
            serde_json::from_slice::<Value>(&body).unwrap(),
            json!({"id": "shelly-1", "source": "webhook", "params": {"on": true}})
        );
    }
}

/// two connection entries (generated, distinct client ids) and 20 concurrent messages
/// each: nobody is disconnected by an id clash, and every message is acknowledged.
async fn concurrent_instances_with_generated_client_ids_stay_connected(version: Option<&str>) {
    let topic = format!("wc/{}", unique("c"));
    let mut rx = subscribe(&topic).await;
    let shared = SharedClients::new();
    let a = Entry::new("mqtt", json!({"topic": topic}))
        .connection("one", connection(version))
        .shared(&shared);
    let mut second = connection(version);
    second["keepalive"] = json!(30); // another entry: another session
    let b = Entry::new("mqtt", json!({"topic": topic}))
        .connection("two", second)
        .shared(&shared);
    let c = Entry::new("mqtt", json!({"topic": topic}))
        .connection("one", connection(version))
        .shared(&shared);
    let outs = [
        a.build(mqtt::build),
        b.build(mqtt::build),
        c.build(mqtt::build),
    ];
    for o in &outs {
        o.setup().await.unwrap();
    }
    assert_eq!(shared.live().await, 2, "entries one and two; c shares one");
    let tasks = (0..60u64).map(|i| {
        let o = &outs[(i % 3) as usize];
        let d = delivery(&format!("m{i}"), payload(i));
        async move { o.process(&d).await }
    });
    for r in futures_util::future::join_all(tasks).await {
        r.unwrap();
    }
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..60 {
        let (_, body) = next(&mut rx).await;
        seen.insert(
            serde_json::from_slice::<Value>(&body).unwrap()["order"]
                .as_u64()
                .unwrap(),
        );
    }
    assert_eq!(seen.len(), 60);
}

#[test]
fn wildcards_and_missing_topics_are_load_errors() {
    for mc in [
        json!({"topic": "a/+/b"}),
        json!({"topic": "$SYS/x"}),
        json!({}),
    ] {
        let entry = Entry::new("mqtt", mc.clone()).connection("broker", connection(None));
        let p = entry.refused(mqtt::build);
        assert!(
            p.errors.iter().any(|e| e.contains("module-config.topic")),
            "{mc}: {p:?}"
        );
    }
    let legacy = Entry::new("mqtt", json!({}))
        .connection("broker", connection(None))
        .webhook(json!({"module": "mqtt", "topic": "legacy/topic"}));
    legacy.build(mqtt::build);
}

/// `mqtt_version` is `"3.1.1"` (the default) or `"5.0"`; anything else is a load error naming
/// the key and the two values.
#[test]
fn mqtt_version_is_3_1_1_or_5_0() {
    for version in [None, Some("3.1.1"), Some("5.0")] {
        Entry::new("mqtt", json!({"topic": "t"}))
            .connection("b", local(1883, version))
            .build(mqtt::build);
    }
    for version in [json!("4.0"), json!("5"), json!("3.1"), json!(5)] {
        let mut conn = local(1883, None);
        conn["mqtt_version"] = version.clone();
        let p = Entry::new("mqtt", json!({"topic": "t"}))
            .connection("b", conn)
            .refused(mqtt::build);
        assert!(
            p.errors.iter().any(|e| e.contains("b.mqtt_version")),
            "{version}: {p:?}"
        );
        if version.is_string() {
            assert!(
                p.errors.iter().any(|e| e.contains("\"3.1.1\" or \"5.0\"")),
                "{version}: {p:?}"
            );
        }
    }
}

async fn a_closed_port_is_transient_connection(version: Option<&str>) {
    let port = closed_port().await;
    let entry =
        Entry::new("mqtt", json!({"topic": "x"})).connection("broker", local(port, version));
    let out = entry.build(mqtt::build);
    let err = out.setup().await.unwrap_err();
    assert_eq!(
        (err.kind, err.category),
        (ErrorKind::Transient, ErrorCategory::Connection),
        "{err}"
    );
    let err = out.process(&delivery("m", payload(0))).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Transient, "{err}");
}

/// A broker that accepts one connection, answers `CONNECT` with a `CONNACK` (MQTT 5's has an
/// empty property list) and drops the connection when the next packet, the `PUBLISH`, arrives,
/// without acknowledging it.
async fn dropping_broker(version: Option<&str>) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connack: &'static [u8] = match version {
        Some("5.0") => &[0x20, 3, 0, 0, 0],
        _ => &[0x20, 2, 0, 0],
    };
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 512];
        let _connect = socket.read(&mut buf).await.unwrap();
        socket.write_all(connack).await.unwrap();
        let _publish = socket.read(&mut buf).await;
    });
    port
}

/// The connection breaks while a QoS 1 publish waits for its `PUBACK`: the publish fails
/// `Transient` at once (not after the acknowledgement timeout).
async fn a_connection_that_breaks_fails_the_waiting_publish_transiently(version: Option<&str>) {
    let port = dropping_broker(version).await;
    let entry = Entry::new("mqtt", json!({"topic": "t", "qos": 1}))
        .connection("broker", local(port, version));
    let out = entry.build(mqtt::build);
    out.setup().await.unwrap();
    let err = out.process(&delivery("m", payload(0))).await.unwrap_err();
    assert_eq!(
        (err.kind, err.category),
        (ErrorKind::Transient, ErrorCategory::Connection),
        "{err}"
    );
}

/// A Mosquitto started by the test on a free port with `settings` after its `listener` line,
/// stopped on drop; `dir` holds the files the settings name.
struct Mosquitto {
    server: PrivateServer,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    async fn start(dir: tempfile::TempDir, settings: &str) -> Mosquitto {
        let port = PrivateServer::free_port().await;
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(&conf, format!("listener {port} 127.0.0.1\n{settings}")).unwrap();
        let mut command = std::process::Command::new(binary("mosquitto", &["/usr/sbin/mosquitto"]));
        command.arg("-c").arg(&conf);
        Mosquitto {
            server: PrivateServer::start(command, port).await,
            _dir: dir,
        }
    }

    fn port(&self) -> u16 {
        self.server.port
    }

    /// A subscriber on `topic` of this broker.
    async fn subscribe(
        &self,
        topic: &str,
    ) -> tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>)> {
        subscribe_with(
            MqttOptions::new(unique("sub"), "127.0.0.1", self.port()),
            topic,
        )
        .await
    }
}

/// A Mosquitto with a password file that knows `hook` / `right`.
async fn auth_broker() -> Mosquitto {
    let dir = tempfile::tempdir().unwrap();
    let passwd = dir.path().join("passwd");
    let made = std::process::Command::new("mosquitto_passwd")
        .args(["-c", "-b"])
        .arg(&passwd)
        .args(["hook", "right"])
        .status()
        .expect("mosquitto_passwd (package mosquitto) is needed for the credential test");
    assert!(made.success());
    let settings = format!(
        "allow_anonymous false\npassword_file {}\n",
        passwd.display()
    );
    Mosquitto::start(dir, &settings).await
}

async fn refused_credentials_are_unavailable_and_good_ones_deliver(version: Option<&str>) {
    let broker = auth_broker().await;
    let conn = |password: &str| {
        let mut c = local(broker.port(), version);
        c["username"] = json!("hook");
        c["password"] = json!(password);
        c
    };
    let bad = Entry::new("mqtt", json!({"topic": "t"})).connection("b", conn("wrong"));
    let err = bad.build(mqtt::build).setup().await.unwrap_err();
    assert_eq!(
        (err.kind, err.category),
        (ErrorKind::Unavailable, ErrorCategory::Auth),
        "{err}"
    );
    assert!(!err.message.contains("wrong"), "{err}");
    let good = Entry::new("mqtt", json!({"topic": "t"})).connection("b", conn("right"));
    let out = good.build(mqtt::build);
    out.setup().await.unwrap();
    out.process(&delivery("m", payload(0))).await.unwrap();
}

/// A Mosquitto with one TLS listener using `pki`'s `server.pem`, `server.key` and `ca.pem`;
/// with `require_certificate`, clients must present a certificate signed by `ca.pem`.
async fn tls_broker(pki: &Pki, require_certificate: bool) -> PrivateServer {
    let port = PrivateServer::free_port().await;
    let conf = pki.path(&format!("mosquitto-{port}.conf"));
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\ncafile {}\ncertfile {}\n\
             keyfile {}\nrequire_certificate {require_certificate}\n",
            pki.file("ca.pem"),
            pki.file("server.pem"),
            pki.file("server.key"),
        ),
    )
    .unwrap();
    let mut command = std::process::Command::new(binary("mosquitto", &["/usr/sbin/mosquitto"]));
    command.arg("-c").arg(&conf);
    PrivateServer::start(command, port).await
}

/// A subscriber over TLS with `config`.
async fn tls_subscribe(
    port: u16,
    config: std::sync::Arc<rustls::ClientConfig>,
    topic: &str,
) -> tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>)> {
    let mut options = MqttOptions::new(unique("sub"), "127.0.0.1", port);
    options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(config)));
    subscribe_with(options, topic).await
}

async fn tls_with_a_private_ca_and_a_client_certificate_is_read_back_over_tls(
    version: Option<&str>,
) {
    let pki = Pki::new();
    let broker = tls_broker(&pki, true).await;
    let topic = format!("wc/{}", unique("tls"));
    let mut rx = tls_subscribe(broker.port, pki.client_config(), &topic).await;
    let mut conn = local(broker.port, version);
    conn["tls"] = json!(true);
    conn["tls_ca_cert_file"] = json!(pki.file("ca.pem"));
    conn["tls_cert_file"] = json!(pki.file("client.pem"));
    conn["tls_key_file"] = json!(pki.file("client.key"));
    let entry = Entry::new("mqtt", json!({"topic": topic, "qos": 1})).connection("broker", conn);
    let out = entry.build(mqtt::build);
    out.setup().await.unwrap();
    published_and_read_back(out.as_ref(), &mut rx, &topic, 7).await;
    out.teardown().await;
}

async fn an_untrusted_server_certificate_or_a_missing_client_certificate_is_unavailable(
    version: Option<&str>,
) {
    let pki = Pki::new();
    let broker = tls_broker(&pki, true).await;
    let other = Pki::new();
    let conn = |extra: Value| {
        let mut c = local(broker.port, version);
        c["tls"] = json!(true);
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let cases = [
        // Another CA: the client refuses the server's certificate.
        json!({"tls_ca_cert_file": other.file("ca.pem"),
               "tls_cert_file": pki.file("client.pem"), "tls_key_file": pki.file("client.key")}),
        // The right CA, no client certificate: the broker refuses the handshake.
        json!({"tls_ca_cert_file": pki.file("ca.pem")}),
    ];
    for extra in cases {
        let entry = Entry::new("mqtt", json!({"topic": "t"})).connection("b", conn(extra.clone()));
        let out = entry.build(mqtt::build);
        let err = out.setup().await.unwrap_err();
        assert_eq!(
            (err.kind, err.category),
            (ErrorKind::Unavailable, ErrorCategory::Connection),
            "{extra}: {err}"
        );
        assert!(err.message.contains("TLS"), "{err}");
        let err = out.process(&delivery("m", payload(0))).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unavailable, "{err}");
    }
}

async fn tls_insecure_accepts_a_self_signed_certificate_that_tls_alone_refuses(
    version: Option<&str>,
) {
    let pki = Pki::self_signed();
    let broker = tls_broker(&pki, false).await;
    let topic = format!("wc/{}", unique("insecure"));
    let mut rx = tls_subscribe(broker.port, insecure_client_config(), &topic).await;
    let conn = |insecure: bool| {
        let mut c = local(broker.port, version);
        c["tls"] = json!(true);
        c["tls_insecure"] = json!(insecure);
        c
    };
    let strict = Entry::new("mqtt", json!({"topic": topic})).connection("b", conn(false));
    let err = strict.build(mqtt::build).setup().await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unavailable, "{err}");
    let insecure = Entry::new("mqtt", json!({"topic": topic})).connection("b", conn(true));
    let out = insecure.build(mqtt::build);
    published_and_read_back(out.as_ref(), &mut rx, &topic, 3).await;
}

#[test]
fn tls_files_are_checked_at_load_and_ignored_without_tls() {
    let pki = Pki::new();
    let conn = |extra: Value| {
        let mut c = json!({"type": "mqtt", "host": "127.0.0.1", "tls": true});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    for (extra, path) in [
        (
            json!({"tls_cert_file": pki.file("client.pem")}),
            "tls_key_file",
        ),
        (
            json!({"tls_key_file": pki.file("client.key")}),
            "tls_cert_file",
        ),
        (
            json!({"tls_ca_cert_file": pki.file("missing.pem")}),
            "tls_ca_cert_file",
        ),
        (
            json!({"tls_ca_cert_file": pki.file("client.key")}),
            "tls_ca_cert_file",
        ),
    ] {
        let entry = Entry::new("mqtt", json!({"topic": "t"})).connection("b", conn(extra.clone()));
        let mut p = webhook_connector::config::Problems::default();
        assert!(mqtt::build(&entry.settings(), &mut p).is_none(), "{extra}");
        assert!(
            p.errors.iter().any(|e| e.contains(&format!("b.{path}"))),
            "{extra}: {p:?}"
        );
    }
    let plain = Entry::new("mqtt", json!({"topic": "t"})).connection(
        "b",
        json!({"type": "mqtt", "host": "127.0.0.1", "tls_insecure": true}),
    );
    let mut problems = webhook_connector::config::Problems::default();
    assert!(mqtt::build(&plain.settings(), &mut problems).is_some());
    assert!(
        problems.warnings.iter().any(|w| w.contains("tls_insecure")),
        "{problems:?}"
    );
}

/// A Mosquitto whose ACL lets anonymous clients read and write `open/#` only, with a Receive
/// Maximum of 2 (`max_inflight_messages`, sent in the MQTT 5 `CONNACK`).
async fn acl_broker() -> Mosquitto {
    let dir = tempfile::tempdir().unwrap();
    let acl = dir.path().join("acl");
    std::fs::write(&acl, "topic readwrite open/#\n").unwrap();
    let settings = format!(
        "allow_anonymous true\nacl_file {}\nmax_inflight_messages 2\n",
        acl.display()
    );
    Mosquitto::start(dir, &settings).await
}

/// MQTT 5: Mosquitto refuses a publish to a topic its ACL does not grant with reason code 0x87
/// in `PUBACK` (QoS 1) and `PUBREC` (QoS 2): `Unavailable`/`auth`, and only that publish
/// fails, the shared session goes on. The two refused QoS 2 publishes hold both of the
/// Receive Maximum's in-flight slots in rumqttc; the next publish still goes through.
#[tokio::test]
async fn mqtt5_a_topic_the_acl_refuses_is_unavailable_and_the_session_goes_on() {
    let broker = acl_broker().await;
    let open = format!("open/{}", unique("acl"));
    let mut rx = broker.subscribe(&open).await;
    let shared = SharedClients::new();
    let instance = |topic: &str, qos: u8| {
        Entry::new("mqtt", json!({"topic": topic, "qos": qos}))
            .connection("b", local(broker.port(), Some("5.0")))
            .shared(&shared)
            .build(mqtt::build)
    };
    let allowed = instance(&open, 2);
    let refused = [
        instance("closed/x", 1),
        instance("closed/x", 2),
        instance("closed/x", 2),
    ];
    allowed.setup().await.unwrap();
    published_and_read_back(allowed.as_ref(), &mut rx, &open, 1).await;
    for (out, packet) in refused.iter().zip(["PUBACK", "PUBREC", "PUBREC"]) {
        let err = out.process(&delivery("m", payload(0))).await.unwrap_err();
        assert_eq!(
            (err.kind, err.category),
            (ErrorKind::Unavailable, ErrorCategory::Auth),
            "{err}"
        );
        assert!(
            err.message.contains(packet) && err.message.contains("0x87"),
            "{err}"
        );
    }
    published_and_read_back(allowed.as_ref(), &mut rx, &open, 2).await;
    assert_eq!(
        shared.live().await,
        1,
        "one client for the connection entry"
    );
}

/// Starts a Mosquitto with `conf`, and publishes a 600-byte message at QoS 1 over MQTT 5 on a
/// fresh topic; checks the failure is `expected` (kind, category) and that the session goes on:
/// the next message is published and read back.
async fn oversized_message_fails_and_the_session_goes_on(
    conf: &str,
    expected: (ErrorKind, ErrorCategory),
) -> OutputError {
    let broker = Mosquitto::start(tempfile::tempdir().unwrap(), conf).await;
    let topic = format!("wc/{}", unique("big"));
    let mut rx = broker.subscribe(&topic).await;
    let out = Entry::new("mqtt", json!({"topic": topic, "qos": 1}))
        .connection("b", local(broker.port(), Some("5.0")))
        .build(mqtt::build);
    out.setup().await.unwrap();
    let big = json!({"blob": "x".repeat(600)});
    let err = out.process(&delivery("big", big)).await.unwrap_err();
    assert_eq!((err.kind, err.category), expected, "{err}");
    published_and_read_back(out.as_ref(), &mut rx, &topic, 4).await;
    err
}

/// MQTT 5: a message that would make a PUBLISH packet larger than the Maximum Packet Size the
/// broker announced (`max_packet_size`) is `Permanent`/`invalid_data` (as reason code 0x95) and
/// is not sent; the session goes on.
#[tokio::test]
async fn mqtt5_a_message_over_the_brokers_maximum_packet_size_is_permanent() {
    let err = oversized_message_fails_and_the_session_goes_on(
        "allow_anonymous true\nmax_packet_size 512\n",
        (ErrorKind::Permanent, ErrorCategory::InvalidData),
    )
    .await;
    assert!(err.message.contains("0x95"), "{err}");
}

/// MQTT 5, a limit of rumqttc 0.25: Mosquitto's `message_size_limit` refuses a larger payload
/// with reason code 0x95 in `PUBACK`, which MQTT 5 does not define for `PUBACK` and rumqttc
/// cannot decode. The session ends: the publish fails `Transient` (not `Permanent`, since the
/// refusal cannot be read), promptly, and the next message goes through on a new session.
#[tokio::test]
async fn mqtt5_a_puback_reason_code_rumqttc_cannot_decode_is_transient() {
    oversized_message_fails_and_the_session_goes_on(
        "allow_anonymous true\nmessage_size_limit 256\n",
        (ErrorKind::Transient, ErrorCategory::Connection),
    )
    .await;
}
