//! `rabbitmq` (`docs/reference/module-contract.md` §3.6, R-100): publish to an AMQP 0-9-1 broker with publisher
//! confirms, over one connection per connection entry and a small pool of channels in confirm
//! mode.
//!
//! - The URL is built with the user name, password and vhost **percent-encoded**, so any
//!   password works (the original did not encode them and had no vhost); `url` replaces it.
//! - Each publish is `mandatory`, carries `content_type`, `message_id`, delivery mode 2 when
//!   `persistent`, and the webhook headers as AMQP string headers.
//! - **Success** is the broker's confirm ack. A nack or a lost connection is `Transient`;
//!   `ACCESS_REFUSED`, `NOT_FOUND`, `PRECONDITION_FAILED` and a returned (unroutable) message are
//!   `Unavailable`; a message over the broker's size limit is `Permanent`. At setup, a queue
//!   that exists with other arguments is `Permanent` (the configuration itself is refused).
//! - **Outbound policy** (`docs/reference/module-contract.md` §2.3): each connection the connector opens first resolves
//!   the URL's host (as lapin reads it) through [`admission::admit`]; lapin then resolves the name
//!   again to connect (kept so that `amqps` verifies the certificate against it). lapin does not
//!   reconnect by itself (no recovery configured): a lost connection is replaced by a new one,
//!   through the check.

use std::sync::Arc;
use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};
use lapin::publisher_confirm::Confirmation;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::uri::AMQPUri;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ErrorKind as LapinKind};
use webhook_connect_protocol::config_values::Secret;

use super::admission;
use super::client_slot::ClientSlot;
use super::connection_keys;
use super::error_mapping;
use super::error_mapping::within;
use super::record::{self, BodyFormat};
use super::settings;
use super::shared::{SharedClients, client_key};
use super::{Delivery, ErrorCategory, ErrorKind, ModuleSettings, Output, OutputError};
use crate::percent;
use crate::settings::Problems;

const AMQP_TIMEOUT: Duration = Duration::from_secs(10);
/// RabbitMQ's default `max_message_size` (128 MiB).
const MAX_MESSAGE: usize = 128 * 1024 * 1024;
/// Idle confirm-mode channels kept per connection.
const IDLE_CHANNELS: usize = 8;

/// Why `queue` is refused, if it is.
fn check_queue(queue: &str) -> Option<&'static str> {
    if queue.is_empty() || queue.len() > 255 {
        return Some("must be 1–255 characters");
    }
    if !queue
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'))
    {
        return Some("may only contain A-Z, a-z, 0-9, _, ., : and -");
    }
    if queue.starts_with("amq.") {
        return Some("must not start with amq. (reserved by the broker)");
    }
    None
}

/// Builds the module, recording configuration problems.
pub fn build(settings: &ModuleSettings<'_>, problems: &mut Problems) -> Option<Box<dyn Output>> {
    let before = problems.errors.len();
    let mut mc = settings.config_reader();
    let queue = mc.string(problems, "queue_name").or_else(|| {
        settings
            .fallback("queue_name")
            .and_then(|v| v.as_str().map(str::to_owned))
    });
    let queue = match queue {
        Some(q) => match check_queue(&q) {
            Some(why) => {
                mc.error(problems, "queue_name", format!("{q:?} {why}"));
                None
            }
            None => Some(q),
        },
        None => {
            mc.error(problems, "queue_name", "missing field");
            None
        }
    };
    let exchange = mc.string(problems, "exchange").unwrap_or_default();
    let routing_key = mc.string(problems, "routing_key");
    let declare_queue = mc.boolean(problems, "declare_queue", true);
    let persistent = mc.boolean(problems, "persistent", true);
    let body = BodyFormat::read(&mut mc, problems, "body");
    mc.finish(problems, false);
    let server = if connection_keys::require_connection(settings, problems) {
        AmqpServer::read(settings, problems)
    } else {
        None
    };
    let queue = queue?;
    let out: Box<dyn Output> = Box::new(RabbitMq {
        routing_key: routing_key.unwrap_or_else(|| queue.clone()),
        queue,
        exchange,
        declare_queue,
        persistent,
        body,
        server: server?,
        shared: settings.shared.clone(),
        client: ClientSlot::default(),
    });
    settings::unless_errors(problems, before, Some(out))
}

#[derive(Debug, Clone)]
struct AmqpServer {
    key: String,
    url: Secret,
    /// `outbound_policy: strict`, applied to every address the host resolves to.
    strict: bool,
}

impl AmqpServer {
    fn read(s: &ModuleSettings<'_>, p: &mut Problems) -> Option<Self> {
        let mut r = connection_keys::connection(s);
        let strict = s.outbound_strict;
        let url = connection_keys::url(&mut r, p, "url", &["amqp", "amqps"], strict);
        let host = connection_keys::host(&mut r, p, "host", Some("localhost"), strict, &[]);
        let port = connection_keys::port(&mut r, p, "port", 5672);
        let user = r.string(p, "user").unwrap_or_else(|| "guest".to_owned());
        let pass =
            connection_keys::secret(&mut r, p, "pass").unwrap_or_else(|| Secret::new("guest"));
        let vhost = r.string(p, "vhost").unwrap_or_else(|| "/".to_owned());
        let tls = r.boolean(p, "tls", false);
        r.finish(p, false);
        let url = match url {
            Some(u) => u,
            None => {
                let host = host?;
                let host = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host
                };
                Secret::new(format!(
                    "{}://{}:{}@{host}:{port}/{}",
                    if tls { "amqps" } else { "amqp" },
                    percent::percent_encode(&user),
                    percent::percent_encode(pass.expose()),
                    percent::percent_encode(&vhost),
                ))
            }
        };
        let empty = serde_json::Map::new();
        Some(AmqpServer {
            key: client_key(
                "rabbitmq",
                s.connection_name.unwrap_or("connection"),
                s.connection.unwrap_or(&empty),
            ),
            url,
            strict,
        })
    }
}

/// One AMQP connection and its idle confirm-mode channels.
struct AmqpClient {
    connection: Connection,
    idle: std::sync::Mutex<Vec<Channel>>,
}

impl AmqpClient {
    async fn connect(server: &AmqpServer) -> Result<AmqpClient, OutputError> {
        // The parse error could quote the URL, credentials included: not passed on.
        let uri = server.url.expose().parse::<AMQPUri>().map_err(|_| {
            OutputError::permanent(ErrorCategory::ClientError, "not a valid AMQP URL")
        })?;
        let connection = within(AMQP_TIMEOUT, "connecting to RabbitMQ", async {
            let authority = &uri.authority;
            admission::admit(&authority.host, authority.port, server.strict, &[]).await?;
            Connection::connect_uri(uri.clone(), ConnectionProperties::default())
                .await
                .map_err(|e| amqp_error("connecting to RabbitMQ", &e))
        })
        .await?;
        Ok(AmqpClient {
            connection,
            idle: std::sync::Mutex::new(Vec::new()),
        })
    }

    fn is_open(&self) -> bool {
        self.connection.status().connected()
    }

    /// An idle channel, or a new one in confirm mode.
    async fn channel(&self) -> Result<Channel, OutputError> {
        loop {
            let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            match idle {
                Some(ch) if ch.status().connected() => return Ok(ch),
                Some(_) => continue,
                None => break,
            }
        }
        let ch = self
            .connection
            .create_channel()
            .await
            .map_err(|e| amqp_error("opening a channel", &e))?;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| amqp_error("enabling publisher confirms", &e))?;
        Ok(ch)
    }

    fn give_back(&self, ch: Channel) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if ch.status().connected() && idle.len() < IDLE_CHANNELS {
            idle.push(ch);
        }
    }
}

/// The shared handle: the current connection, replaced when it has closed.
struct AmqpShared {
    server: AmqpServer,
    current: tokio::sync::Mutex<Option<Arc<AmqpClient>>>,
}

impl AmqpShared {
    async fn client(&self) -> Result<Arc<AmqpClient>, OutputError> {
        let mut current = self.current.lock().await;
        if let Some(c) = current.as_ref().filter(|c| c.is_open()) {
            return Ok(c.clone());
        }
        let c = Arc::new(AmqpClient::connect(&self.server).await?);
        *current = Some(c.clone());
        Ok(c)
    }
}

/// `docs/reference/module-contract.md` §3.6.
fn amqp_error(what: &str, e: &lapin::Error) -> OutputError {
    let text = format!("{what}: {e}");
    match e.kind() {
        LapinKind::ProtocolError(amqp) => match amqp.kind() {
            AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED)
            | AMQPErrorKind::Hard(AMQPHardError::NOTALLOWED) => {
                OutputError::unavailable(ErrorCategory::Auth, text)
            }
            AMQPErrorKind::Soft(
                AMQPSoftError::NOTFOUND
                | AMQPSoftError::PRECONDITIONFAILED
                | AMQPSoftError::RESOURCELOCKED
                | AMQPSoftError::NOROUTE,
            ) => OutputError::unavailable(ErrorCategory::ClientError, text),
            AMQPErrorKind::Soft(AMQPSoftError::CONTENTTOOLARGE) => {
                OutputError::permanent(ErrorCategory::InvalidData, text)
            }
            AMQPErrorKind::Hard(AMQPHardError::CONNECTIONFORCED) => {
                OutputError::transient(ErrorCategory::Connection, text)
            }
            _ => OutputError::transient(ErrorCategory::ServerError, text),
        },
        LapinKind::IOError(io) => error_mapping::io_error(what, io),
        _ => OutputError::transient(ErrorCategory::Connection, text),
    }
}

struct RabbitMq {
    queue: String,
    exchange: String,
    routing_key: String,
    declare_queue: bool,
    persistent: bool,
    body: BodyFormat,
    server: AmqpServer,
    shared: Arc<SharedClients>,
    client: ClientSlot<AmqpShared>,
}

impl std::fmt::Debug for RabbitMq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RabbitMq")
            .field("queue", &self.queue)
            .field("exchange", &self.exchange)
            .finish_non_exhaustive()
    }
}

impl RabbitMq {
    async fn client(&self) -> Result<Arc<AmqpClient>, OutputError> {
        let server = &self.server;
        let shared = self
            .client
            .get_or(self.shared.get_or_connect(&server.key, || async {
                Ok(AmqpShared {
                    server: server.clone(),
                    current: tokio::sync::Mutex::new(None),
                })
            }))
            .await?;
        shared.client().await
    }

    fn properties(&self, d: &Delivery, content_type: String) -> BasicProperties {
        let mut headers = FieldTable::default();
        for (k, v) in &d.headers {
            headers.insert(
                ShortString::from(k.as_str()),
                AMQPValue::LongString(LongString::from(v.as_str())),
            );
        }
        BasicProperties::default()
            .with_content_type(ShortString::from(content_type))
            .with_message_id(ShortString::from(d.message_id.as_str()))
            .with_delivery_mode(if self.persistent { 2 } else { 1 })
            .with_headers(headers)
    }
}

#[async_trait::async_trait]
impl Output for RabbitMq {
    async fn setup(&self) -> Result<(), OutputError> {
        let client = self.client().await?;
        // A channel of its own: a failed declare closes it.
        let ch = client
            .connection
            .create_channel()
            .await
            .map_err(|e| amqp_error("opening a channel", &e))?;
        let options = QueueDeclareOptions {
            durable: true,
            passive: !self.declare_queue,
            ..QueueDeclareOptions::default()
        };
        let declared = within(AMQP_TIMEOUT, "declaring the queue", async {
            ch.queue_declare(&self.queue, options, FieldTable::default())
                .await
                .map_err(|e| amqp_error("declaring the queue", &e))
        })
        .await;
        let _ = ch.close(200, "setup done").await;
        match declared {
            Ok(_) => Ok(()),
            // The queue exists with other arguments: the configuration is refused.
            Err(e)
                if self.declare_queue
                    && e.kind == ErrorKind::Unavailable
                    && e.message.contains("PRECONDITION") =>
            {
                Err(OutputError::permanent(
                    ErrorCategory::ClientError,
                    e.message,
                ))
            }
            Err(e) => Err(e),
        }
    }

    async fn process(&self, delivery: &Delivery) -> Result<(), OutputError> {
        let encoded = record::encode(delivery, self.body)?;
        if encoded.bytes.len() > MAX_MESSAGE {
            return Err(OutputError::permanent(
                ErrorCategory::InvalidData,
                format!(
                    "message of {} bytes exceeds the broker's limit",
                    encoded.bytes.len()
                ),
            ));
        }
        let client = self.client().await?;
        let ch = client.channel().await?;
        let properties = self.properties(delivery, encoded.content_type);
        let options = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        let confirmation = within(AMQP_TIMEOUT, "publisher confirm", async {
            ch.basic_publish(
                &self.exchange,
                &self.routing_key,
                options,
                &encoded.bytes,
                properties,
            )
            .await
            .map_err(|e| amqp_error("publish", &e))?
            .await
            .map_err(|e| amqp_error("publisher confirm", &e))
        })
        .await?;
        client.give_back(ch);
        match confirmation {
            Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
            Confirmation::Ack(Some(returned)) => Err(OutputError::unavailable(
                ErrorCategory::ClientError,
                format!(
                    "message returned as unroutable: {} {}",
                    returned.reply_code, returned.reply_text
                ),
            )),
            Confirmation::Nack(_) => Err(OutputError::transient(
                ErrorCategory::ServerError,
                "the broker nacked the message",
            )),
        }
    }

    async fn teardown(&self) {
        self.client.release();
    }
}

#[cfg(test)]
mod tests {
    use super::check_queue;

    #[test]
    fn queue_names_are_checked() {
        assert_eq!(check_queue("orders.created:v1-x"), None);
        for bad in ["", "amq.gen", "a b", "a/b", &"q".repeat(256)] {
            assert!(check_queue(bad).is_some(), "{bad}");
        }
    }
}
