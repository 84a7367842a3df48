//! `mqtt` (`docs/reference/module-contract.md` §3.13, R-93): publish to an MQTT broker, version 3.1.1 (the default)
//! or 5.0 (conn `mqtt_version: "5.0"`), over one persistent session per connection entry,
//! shared by every instance that names it.
//!
//! Files: `config.rs` reads the settings, `session.rs` keeps the shared session and pairs
//! publishes with acknowledgements for both versions, `v311.rs` and `v5.rs` hold what differs
//! between the versions (rumqttc's two clients, and MQTT 5's reason codes).
//!
//! - **Client ids** are unique: `webhook-connector-<8 random hex>` per process and connection
//!   unless `client_id` is configured. (The original connected per message with one fixed id,
//!   so concurrent messages disconnected each other.)
//! - **Success** is the broker's `PUBACK` for QoS 1, `PUBCOMP` for QoS 2, and the packet
//!   written for QoS 0. Publishes are matched to acknowledgements by packet id: the session
//!   queues a waiter per publish in request order and the event loop pairs each outgoing
//!   packet id with the next waiter. With MQTT 5, "no matching subscribers" (0x10) is success.
//! - **TLS** (`tls: true`): rustls, trusting the public roots plus `tls_ca_cert_file`, with an
//!   optional client certificate (`tls_cert_file` + `tls_key_file`); `tls_insecure` accepts any
//!   server certificate. Certificate files are read at load. A failed handshake is
//!   `Unavailable`.
//! - **Failures.** When the connection breaks, every waiting publish fails `Transient` and the
//!   session is replaced on the next use, so no stale packet can be paired with a new waiter.
//!   A refused `CONNECT` for bad credentials or authorisation is `Unavailable`.
//! - **Outbound policy** (`docs/reference/module-contract.md` §2.3): every session starts by resolving `host` through
//!   [`admission::admit`](super::admission::admit); rumqttc then resolves the name again to open
//!   the connection (the name is kept so that TLS verifies the certificate against it). rumqttc
//!   never reconnects by itself here: a session ends with its connection, and the next one is
//!   checked again.
//!
//! **MQTT 5 reason codes.** A `PUBACK` or `PUBREC` (or `PUBCOMP`) with a failure reason code
//! fails only its own publish, and the session goes on:
//!
//! | code | meaning | kind, category |
//! |---|---|---|
//! | 0x87 | not authorized | `Unavailable`, `auth` |
//! | 0x90 | topic name invalid | `Permanent`, `invalid_data` |
//! | 0x95 | packet too large | `Permanent`, `invalid_data` |
//! | 0x99 | payload format invalid | `Permanent`, `invalid_data` |
//! | 0x83 | implementation specific error: the broker is not willing to take this message | `Permanent`, `client_error` |
//! | 0x97 | quota exceeded | `Transient`, `rate_limited` |
//! | 0x91, 0x92 | packet identifier in use / not found | `Transient`, `other` |
//! | 0x80 and any other | unspecified error | `Transient`, `server_error` |
//!
//! 0x83 is `Permanent` because a broker sends it about the message itself (a plugin's or a
//! limit's refusal of this publish), which a retry of the same message does not change.
//! A message that would make a PUBLISH packet larger than the Maximum Packet Size the broker
//! announced in its `CONNACK` is not sent; it fails as 0x95 would, without touching the
//! session.
//!
//! A refused MQTT 5 `CONNECT`: bad user name or password (0x86), not authorized (0x87), banned
//! (0x8A) and bad authentication method (0x8C) are `Unavailable`/`auth`; refusals only a change
//! of configuration lifts (unsupported protocol version, client identifier not valid, server
//! moved, …) `Unavailable`/`client_error`; server unavailable (0x88), server busy (0x89),
//! unspecified and implementation specific errors `Transient`/`server_error`; quota and
//! connection rate exceeded `Transient`/`rate_limited`. A `DISCONNECT` from the broker fails
//! every waiting publish, so it is blamed on none of them: `Unavailable`/`auth` for not
//! authorized, otherwise `Transient`.
//!
//! Two limits of rumqttc 0.25's MQTT 5 client: it cannot decode a `PUBACK` whose reason code
//! MQTT 5 does not allow there (Mosquitto's `message_size_limit` answers 0x95 in `PUBACK`), so
//! such an answer ends the session and the waiting publishes fail `Transient`; and a QoS 2
//! publish refused in `PUBREC` keeps its in-flight slot, so once the refused publishes fill the
//! broker's Receive Maximum the session is replaced.

mod config;
mod session;
mod v311;
mod v5;

use std::sync::Arc;
use std::time::Duration;

use rumqttc::QoS;
use serde_json::json;

use super::client_slot::ClientSlot;
use super::record::{self, BodyFormat};
use super::settings;
use super::shared::SharedClients;
use super::{Delivery, ErrorCategory, ModuleSettings, Output, OutputError};
use crate::failure;
use crate::settings::Problems;
use config::MqttServer;
use session::MqttClient;

/// Bound on connecting and on each acknowledgement.
const MQTT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest MQTT packet (the protocol's remaining-length limit).
const MAX_PACKET: usize = 268_435_455;

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
    let topic = config::read_topic(settings, &mut mc, problems);
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
    settings::unless_errors(problems, before, Some(out))
}

/// A failed TLS handshake (certificate not trusted, name mismatch, client certificate
/// refused) needs an operator: `Unavailable`, category `connection` as for the other modules'
/// TLS failures. A connection dropped during the handshake is `Transient`.
fn tls_error(e: &rumqttc::TlsError, text: String) -> OutputError {
    let rustls_failure = match e {
        rumqttc::TlsError::Io(io) => failure::is_tls_failure(io),
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
                Ok(MqttClient::new(server.clone()))
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
        self.client().await?.connect().await
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
