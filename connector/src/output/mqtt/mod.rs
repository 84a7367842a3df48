//! `mqtt` (`modules.md` §3.13, R-93): publish to an MQTT 3.1.1 broker over one persistent
//! session per connection entry, shared by every instance that names it.
//!
//! - **Client ids** are unique: `webhook-connector-<8 random hex>` per process and connection
//!   unless `client_id` is configured. (The original connected per message with one fixed id,
//!   so concurrent messages disconnected each other.)
//! - **Success** is the broker's `PUBACK` for QoS 1, `PUBCOMP` for QoS 2, and the packet
//!   written for QoS 0. Publishes are matched to acknowledgements by packet id: the session
//!   queues a waiter per publish in request order and the event loop pairs each outgoing
//!   packet id with the next waiter.
//! - **TLS** (`tls: true`): rustls, trusting the public roots plus `tls_ca_cert_file`, with an
//!   optional client certificate (`tls_cert_file` + `tls_key_file`); `tls_insecure` accepts any
//!   server certificate. Certificate files are read at load. A failed handshake is
//!   `Unavailable`.
//! - **Failures.** When the connection breaks, every waiting publish fails `Transient` and the
//!   session is replaced on the next use, so no stale packet can be paired with a new waiter.
//!   A refused `CONNECT` for bad credentials or authorisation is `Unavailable`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, MqttOptions, Outgoing, Packet, QoS,
    TlsConfiguration, Transport,
};
use serde_json::json;
use tokio::sync::{oneshot, watch};
use webhook_connect_protocol::config_values::Secret;

use super::endpoint::{self, ClientSlot, within};
use super::record::{self, BodyFormat};
use super::shared::{SharedClients, client_key};
use super::{Delivery, ErrorCategory, ModuleSettings, Output, OutputError};
use crate::config::reader::Reader;
use crate::config::{Problems, TlsConfig};

/// Bound on connecting and on each acknowledgement.
const MQTT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest MQTT packet (the protocol's remaining-length limit).
const MAX_PACKET: usize = 268_435_455;

/// Why `topic` is refused, if it is.
fn check_topic(topic: &str) -> Option<&'static str> {
    if topic.is_empty() || topic.len() > 32_768 {
        return Some("must be 1–32768 bytes");
    }
    if !topic
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
    {
        return Some("may only contain A-Z, a-z, 0-9, _, -, . and / (no + or # wildcards)");
    }
    if topic.starts_with('$') || topic.contains("//") || topic.contains("..") {
        return Some("must not start with $ or contain // or ..");
    }
    None
}

/// How the message body is formed.
#[derive(Debug, Clone)]
enum Shape {
    Plain(BodyFormat),
    Shelly { device_id: String },
}

/// Builds the module, recording configuration problems.
pub fn build(settings: &ModuleSettings<'_>, problems: &mut Problems) -> Option<Box<dyn Output>> {
    let before = problems.errors.len();
    let mut mc = settings.config_reader();
    let topic = read_topic(settings, &mut mc, problems);
    let qos = match mc.integer_in(problems, "qos", 1, 0, 2) {
        0 => QoS::AtMostOnce,
        2 => QoS::ExactlyOnce,
        _ => QoS::AtLeastOnce,
    };
    let retained = mc.boolean(problems, "retained", false);
    let format = BodyFormat::read(&mut mc, problems, "format");
    let shape = if mc.boolean(problems, "shelly_gen2_format", false) {
        let device_id = mc.string(problems, "device_id");
        if device_id.is_none() {
            mc.error(problems, "device_id", "required with shelly_gen2_format");
        }
        Shape::Shelly {
            device_id: device_id.unwrap_or_default(),
        }
    } else {
        Shape::Plain(format)
    };
    mc.finish(problems, false);
    let server = MqttServer::read(settings, problems);
    let out: Box<dyn Output> = Box::new(Mqtt {
        topic: topic?,
        qos,
        retained,
        shape,
        server: server?,
        shared: settings.shared.clone(),
        session: ClientSlot::default(),
    });
    endpoint::unless_errors(problems, before, Some(out))
}

/// The topic: `topic` (falling back to the webhook-level `topic`) or the Tasmota topic, after
/// `topic_prefix`.
fn read_topic(s: &ModuleSettings<'_>, mc: &mut Reader<'_>, p: &mut Problems) -> Option<String> {
    let prefix = mc.string(p, "topic_prefix");
    let tasmota = mc.boolean(p, "tasmota_format", false);
    let base = if tasmota {
        let kind = mc.choice(p, "tasmota_type", "cmnd", &["cmnd", "stat", "tele"]);
        let device = mc.string(p, "device_name");
        let command = mc.string(p, "command");
        let Some(device) = device else {
            mc.error(p, "device_name", "required with tasmota_format");
            return None;
        };
        match kind {
            "cmnd" => format!("cmnd/{device}/{}", command.as_deref().unwrap_or("POWER")),
            "stat" => format!("stat/{device}/status"),
            _ => format!("tele/{device}/telemetry"),
        }
    } else {
        let own = mc.string(p, "topic");
        let fallback = s
            .fallback("topic")
            .and_then(|v| v.as_str().map(str::to_owned));
        match own.or(fallback) {
            Some(t) => t,
            None => {
                mc.error(p, "topic", "missing field");
                return None;
            }
        }
    };
    let topic = match prefix.as_deref().map(|x| x.trim_end_matches('/')) {
        Some(prefix) if !prefix.is_empty() => format!("{prefix}/{base}"),
        _ => base,
    };
    if let Some(why) = check_topic(&topic) {
        mc.error(p, "topic", format!("{topic:?} {why}"));
        return None;
    }
    Some(topic)
}

/// Connection settings of one broker.
#[derive(Debug, Clone)]
struct MqttServer {
    key: String,
    host: String,
    port: u16,
    username: Option<String>,
    password: Option<Secret>,
    client_id: String,
    keepalive: u64,
    /// The TLS configuration with `tls: true`, built at load so an unreadable certificate or
    /// key file is a load error.
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl MqttServer {
    fn read(s: &ModuleSettings<'_>, p: &mut Problems) -> Option<Self> {
        if !endpoint::require_connection(s, p) {
            return None;
        }
        let mut r = endpoint::connection(s);
        let host = endpoint::host(&mut r, p, "host", None, s.outbound_strict, &[]);
        let port = endpoint::port(&mut r, p, "port", 1883);
        let username = r.string(p, "username");
        let password = endpoint::secret(&mut r, p, "password");
        let client_id = r
            .string(p, "client_id")
            .unwrap_or_else(|| format!("webhook-connector-{:08x}", rand::random::<u32>()));
        let keepalive = r.integer_in(p, "keepalive", 60, 5, 65_535);
        let version = r.string(p, "mqtt_version");
        match version.as_deref() {
            None | Some("3.1.1") => {}
            Some("5.0" | "5") => r.error(
                p,
                "mqtt_version",
                "MQTT 5.0 is not supported by this build; use \"3.1.1\"",
            ),
            Some(other) => r.error(
                p,
                "mqtt_version",
                format!("must be \"3.1.1\" or \"5.0\", got {other:?}"),
            ),
        }
        let tls = read_tls(&mut r, p);
        r.finish(p, false);
        let empty = serde_json::Map::new();
        Some(MqttServer {
            key: client_key(
                "mqtt",
                s.connection_name.unwrap_or("connection"),
                s.connection.unwrap_or(&empty),
            ),
            host: host?,
            port,
            username,
            password,
            client_id,
            keepalive: u64::try_from(keepalive).unwrap_or(60),
            tls: tls?,
        })
    }

    fn options(&self) -> MqttOptions {
        let mut o = MqttOptions::new(&self.client_id, &self.host, self.port);
        o.set_keep_alive(Duration::from_secs(self.keepalive))
            .set_clean_session(true)
            .set_max_packet_size(MAX_PACKET, MAX_PACKET);
        if let Some(user) = &self.username {
            let password = self
                .password
                .as_ref()
                .map(Secret::expose)
                .unwrap_or_default();
            o.set_credentials(user, password);
        }
        if let Some(tls) = &self.tls {
            o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                tls.clone(),
            )));
        }
        o
    }
}

/// The TLS keys: `tls` (default false), `tls_insecure` (accept any server certificate),
/// `tls_ca_cert_file` (PEM, trusted in addition to the public roots), `tls_cert_file` +
/// `tls_key_file` (client certificate, both or neither). `Some(None)` is plain TCP; `None` a
/// load error.
fn read_tls(r: &mut Reader<'_>, p: &mut Problems) -> Option<Option<Arc<rustls::ClientConfig>>> {
    let tls = r.boolean(p, "tls", false);
    let insecure = r.boolean(p, "tls_insecure", false);
    let ca = r.string(p, "tls_ca_cert_file");
    let cert = r.string(p, "tls_cert_file");
    let key = r.string(p, "tls_key_file");
    if !tls {
        for (name, set) in [
            ("tls_insecure", insecure),
            ("tls_ca_cert_file", ca.is_some()),
            ("tls_cert_file", cert.is_some()),
            ("tls_key_file", key.is_some()),
        ] {
            if set {
                r.warn(p, name, "ignored without \"tls\": true");
            }
        }
        return Some(None);
    }
    let client_cert = match (cert, key) {
        (Some(c), Some(k)) => Some((c.into(), k.into())),
        (None, None) => None,
        (Some(_), None) => {
            r.error(p, "tls_key_file", "required with tls_cert_file");
            return None;
        }
        (None, Some(_)) => {
            r.error(p, "tls_cert_file", "required with tls_key_file");
            return None;
        }
    };
    let config = TlsConfig {
        verify: !insecure,
        ca_cert_path: ca.map(Into::into),
        client_cert,
    };
    const KEYS: [&str; 3] = ["tls_ca_cert_file", "tls_cert_file", "tls_key_file"];
    match crate::tls::client_config_for(&config, KEYS) {
        Ok(c) => Some(Some(c)),
        Err(message) => {
            // The message starts with the key it is about.
            let key = KEYS
                .into_iter()
                .find(|k| message.starts_with(&format!("{k}: ")))
                .unwrap_or("tls");
            let text = message
                .strip_prefix(&format!("{key}: "))
                .unwrap_or(&message);
            r.error(p, key, text);
            None
        }
    }
}

/// A publish waiting for the broker.
type Waiter = oneshot::Sender<Result<(), OutputError>>;

#[derive(Default)]
struct Pending {
    /// Publishes handed to the client, not yet given a packet id, in request order.
    queued: VecDeque<(QoS, Waiter)>,
    /// Publishes waiting for `PUBACK` / `PUBCOMP`, by packet id.
    inflight: HashMap<u16, Waiter>,
}

impl Pending {
    fn fail_all(&mut self, err: &OutputError) {
        for (_, w) in self.queued.drain(..) {
            let _ = w.send(Err(err.clone()));
        }
        for (_, w) in self.inflight.drain() {
            let _ = w.send(Err(err.clone()));
        }
    }
}

#[derive(Debug, Clone)]
enum State {
    Connecting,
    Up,
    Down(OutputError),
}

/// One connection to the broker and the task that drives it.
struct Session {
    client: AsyncClient,
    pending: Arc<Mutex<Pending>>,
    state: watch::Receiver<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Session {
    fn start(server: &MqttServer) -> Session {
        let (client, mut eventloop) = AsyncClient::new(server.options(), 64);
        let pending = Arc::new(Mutex::new(Pending::default()));
        let (state_tx, state) = watch::channel(State::Connecting);
        let p = pending.clone();
        let task = tokio::spawn(async move {
            loop {
                let event = eventloop.poll().await;
                let mut pending = p.lock().unwrap_or_else(|e| e.into_inner());
                match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = state_tx.send(State::Up);
                    }
                    Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                        if let Some((qos, w)) = pending.queued.pop_front() {
                            if qos == QoS::AtMostOnce {
                                let _ = w.send(Ok(()));
                            } else {
                                pending.inflight.insert(pkid, w);
                            }
                        }
                    }
                    Ok(Event::Incoming(Packet::PubAck(ack))) => {
                        if let Some(w) = pending.inflight.remove(&ack.pkid) {
                            let _ = w.send(Ok(()));
                        }
                    }
                    Ok(Event::Incoming(Packet::PubComp(comp))) => {
                        if let Some(w) = pending.inflight.remove(&comp.pkid) {
                            let _ = w.send(Ok(()));
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let err = mqtt_error(&e);
                        pending.fail_all(&err);
                        let _ = state_tx.send(State::Down(err));
                        // The session is finished; the next use starts a new one.
                        return;
                    }
                }
            }
        });
        Session {
            client,
            pending,
            state,
            task,
        }
    }

    /// Waits until the broker accepted the connection.
    async fn connected(&self) -> Result<(), OutputError> {
        let mut state = self.state.clone();
        within(MQTT_TIMEOUT, "connecting to the MQTT broker", async {
            loop {
                match &*state.borrow_and_update() {
                    State::Up => return Ok(()),
                    State::Down(e) => return Err(e.clone()),
                    State::Connecting => {}
                }
                if state.changed().await.is_err() {
                    return Err(OutputError::transient(
                        ErrorCategory::Connection,
                        "MQTT session ended",
                    ));
                }
            }
        })
        .await
    }

    fn is_down(&self) -> bool {
        matches!(&*self.state.borrow(), State::Down(_))
    }
}

/// The shared client of one connection entry: the current session, replaced after a failure.
struct MqttClient {
    server: MqttServer,
    session: tokio::sync::Mutex<Option<Arc<Session>>>,
    /// Keeps request order and waiter order the same.
    publish_order: tokio::sync::Mutex<()>,
}

impl MqttClient {
    async fn session(&self) -> Result<Arc<Session>, OutputError> {
        let mut current = self.session.lock().await;
        let session = match current.as_ref() {
            Some(s) if !s.is_down() => s.clone(),
            _ => {
                let s = Arc::new(Session::start(&self.server));
                *current = Some(s.clone());
                s
            }
        };
        drop(current);
        session.connected().await?;
        Ok(session)
    }

    async fn publish(
        &self,
        topic: &str,
        qos: QoS,
        retain: bool,
        body: Vec<u8>,
    ) -> Result<(), OutputError> {
        let session = self.session().await?;
        let (tx, rx) = oneshot::channel();
        {
            let _order = self.publish_order.lock().await;
            session
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .queued
                .push_back((qos, tx));
            if let Err(e) = session.client.publish(topic, qos, retain, body).await {
                // The request never reached the event loop: take our waiter back out.
                let mut pending = session.pending.lock().unwrap_or_else(|e| e.into_inner());
                pending.queued.pop_back();
                return Err(OutputError::transient(
                    ErrorCategory::Connection,
                    format!("MQTT publish: {e}"),
                ));
            }
        }
        within(MQTT_TIMEOUT, "MQTT acknowledgement", async {
            rx.await.unwrap_or_else(|_| {
                Err(OutputError::transient(
                    ErrorCategory::Connection,
                    "MQTT session ended before the acknowledgement",
                ))
            })
        })
        .await
    }
}

/// `modules.md` §3.13: refused `CONNECT` for credentials or authorisation is `Unavailable`;
/// network failures and timeouts are `Transient`.
fn mqtt_error(e: &ConnectionError) -> OutputError {
    let text = format!("MQTT: {e}");
    // With TLS 1.3 a refused client certificate arrives as an alert after the handshake,
    // while the CONNACK is read: look for TLS failures under every variant.
    if endpoint::is_tls_failure(e) {
        return OutputError::unavailable(ErrorCategory::Connection, format!("MQTT TLS: {text}"));
    }
    match e {
        ConnectionError::ConnectionRefused(
            ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized,
        ) => OutputError::unavailable(ErrorCategory::Auth, text),
        ConnectionError::ConnectionRefused(
            ConnectReturnCode::BadClientId | ConnectReturnCode::RefusedProtocolVersion,
        ) => OutputError::unavailable(ErrorCategory::ClientError, text),
        ConnectionError::ConnectionRefused(_) => {
            OutputError::transient(ErrorCategory::ServerError, text)
        }
        ConnectionError::NetworkTimeout | ConnectionError::FlushTimeout => {
            OutputError::transient(ErrorCategory::Timeout, text)
        }
        ConnectionError::Io(io) => endpoint::io_error("MQTT", io),
        ConnectionError::Tls(tls) => tls_error(tls, text),
        _ => OutputError::transient(ErrorCategory::Connection, text),
    }
}

/// A failed TLS handshake (certificate not trusted, name mismatch, client certificate
/// refused) needs an operator: `Unavailable`, category `connection` as for the other modules'
/// TLS failures. A connection dropped during the handshake is `Transient`.
fn tls_error(e: &rumqttc::TlsError, text: String) -> OutputError {
    let rustls_failure = match e {
        rumqttc::TlsError::Io(io) => endpoint::is_tls_failure(io),
        _ => true,
    };
    if rustls_failure {
        OutputError::unavailable(ErrorCategory::Connection, format!("MQTT TLS: {text}"))
    } else {
        OutputError::transient(ErrorCategory::Connection, text)
    }
}

struct Mqtt {
    topic: String,
    qos: QoS,
    retained: bool,
    shape: Shape,
    server: MqttServer,
    shared: Arc<SharedClients>,
    session: ClientSlot<MqttClient>,
}

impl std::fmt::Debug for Mqtt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mqtt")
            .field("topic", &self.topic)
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl Mqtt {
    async fn client(&self) -> Result<Arc<MqttClient>, OutputError> {
        let server = &self.server;
        self.session
            .get_or(self.shared.get_or_connect(&server.key, || async {
                Ok(MqttClient {
                    server: server.clone(),
                    session: tokio::sync::Mutex::new(None),
                    publish_order: tokio::sync::Mutex::new(()),
                })
            }))
            .await
    }

    fn body(&self, d: &Delivery) -> Result<Vec<u8>, OutputError> {
        match &self.shape {
            Shape::Plain(format) => Ok(record::encode(d, *format)?.bytes),
            Shape::Shelly { device_id } => Ok(json!({
                "id": device_id,
                "source": "webhook",
                "params": d.payload,
            })
            .to_string()
            .into_bytes()),
        }
    }
}

#[async_trait::async_trait]
impl Output for Mqtt {
    async fn setup(&self) -> Result<(), OutputError> {
        self.client().await?.session().await.map(|_| ())
    }

    async fn process(&self, delivery: &Delivery) -> Result<(), OutputError> {
        let body = self.body(delivery)?;
        if body.len() > MAX_PACKET - self.topic.len() - 8 {
            return Err(OutputError::permanent(
                ErrorCategory::InvalidData,
                "payload larger than an MQTT packet can carry",
            ));
        }
        self.client()
            .await?
            .publish(&self.topic, self.qos, self.retained, body)
            .await
    }

    async fn teardown(&self) {
        self.session.release();
    }
}

#[cfg(test)]
mod tests {
    use super::check_topic;

    #[test]
    fn topics_are_checked() {
        for ok in ["webhooks/orders", "a", "home/dev-1/state.json"] {
            assert_eq!(check_topic(ok), None, "{ok}");
        }
        for bad in ["", "a/+/b", "a/#", "$SYS/x", "a//b", "a/../b", "a b"] {
            assert!(check_topic(bad).is_some(), "{bad}");
        }
    }
}
