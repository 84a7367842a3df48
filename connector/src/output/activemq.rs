//! `activemq` (`docs/reference/module-contract.md` §3.15, R-99): STOMP 1.2 `SEND` over one persistent connection per
//! connection entry, written here over a tokio `TcpStream` (no maintained STOMP crate fits).
//!
//! - Each `SEND` carries `content-type: application/json`, `content-length`, `persistent`,
//!   `webhook-message-id`, the webhook headers (escaped as STOMP 1.2 requires) and a `receipt`.
//! - **Success** is the matching `RECEIPT` within 10 s.
//! - **Errors:** a lost connection or no receipt in time is `Transient`; an `ERROR` frame about
//!   login or access `Unavailable`; any other `ERROR` frame (about the message) `Permanent`.
//!   After an `ERROR` the broker closes the connection; the next use opens a new one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::oneshot;
use webhook_connect_protocol::config_values::Secret;

use super::admission;
use super::client_slot::ClientSlot;
use super::connection_keys;
use super::error_mapping;
use super::error_mapping::within;
use super::settings;
use super::shared::{SharedClients, client_key};
use super::{Delivery, ErrorCategory, ModuleSettings, Output, OutputError};
use crate::settings::Problems;

const STOMP_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest frame accepted from the broker.
const MAX_FRAME: usize = 1024 * 1024;

/// Builds the module, recording configuration problems.
pub fn build(settings: &ModuleSettings<'_>, problems: &mut Problems) -> Option<Box<dyn Output>> {
    let before = problems.errors.len();
    let mut mc = settings.config_reader();
    let destination = mc.string(problems, "destination").or_else(|| {
        settings
            .fallback("destination")
            .and_then(|v| v.as_str().map(str::to_owned))
    });
    let destination_ok = |d: &str| {
        !d.is_empty()
            && d.len() <= 255
            && d.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'))
    };
    let destination = match destination {
        Some(d) if destination_ok(&d) => Some(d),
        Some(d) => {
            mc.error(
                problems,
                "destination",
                format!("{d:?} must be 1–255 characters from A-Z, a-z, 0-9, _, ., : and -"),
            );
            None
        }
        None => {
            mc.error(problems, "destination", "missing field");
            None
        }
    };
    let kind = mc.choice(problems, "destination_type", "queue", &["queue", "topic"]);
    let persistent = mc.boolean(problems, "persistent", true);
    mc.finish(problems, false);
    let server = if connection_keys::require_connection(settings, problems) {
        StompServer::read(settings, problems)
    } else {
        None
    };
    let out: Box<dyn Output> = Box::new(ActiveMq {
        destination: format!("/{kind}/{}", destination?),
        persistent,
        server: server?,
        shared: settings.shared.clone(),
        client: ClientSlot::default(),
    });
    settings::unless_errors(problems, before, Some(out))
}

#[derive(Debug, Clone)]
struct StompServer {
    key: String,
    host: String,
    port: u16,
    login: Option<String>,
    passcode: Option<Secret>,
    vhost: String,
    /// `outbound_policy: strict`, applied to every address the host resolves to.
    strict: bool,
}

impl StompServer {
    fn read(s: &ModuleSettings<'_>, p: &mut Problems) -> Option<Self> {
        let mut r = connection_keys::connection(s);
        let host = connection_keys::host(&mut r, p, "host", None, s.outbound_strict, &[]);
        let port = connection_keys::port(&mut r, p, "port", 61613);
        let login = r.string(p, "user").or_else(|| r.string(p, "username"));
        let passcode = connection_keys::secret(&mut r, p, "password");
        if r.boolean(p, "use_ssl", false) {
            r.error(
                p,
                "use_ssl",
                "STOMP over TLS is not supported by this build",
            );
        }
        let vhost = r.string(p, "vhost").unwrap_or_else(|| "/".to_owned());
        r.finish(p, false);
        let empty = serde_json::Map::new();
        Some(StompServer {
            key: client_key(
                "activemq",
                s.connection_name.unwrap_or("connection"),
                s.connection.unwrap_or(&empty),
            ),
            host: host?,
            port,
            strict: s.outbound_strict,
            login,
            passcode,
            vhost,
        })
    }
}

/// STOMP 1.2 header escaping.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            ':' => out.push_str("\\c"),
            other => out.push(other),
        }
    }
    out
}

/// One frame read from the broker.
#[derive(Debug, Default)]
struct Frame {
    command: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Frame {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The error an `ERROR` frame stands for.
    fn error(&self) -> OutputError {
        let message = self.header("message").unwrap_or("ERROR frame").to_owned();
        let detail = String::from_utf8_lossy(&self.body);
        let text = format!("STOMP broker: {message}");
        let lower = format!("{message} {detail}").to_ascii_lowercase();
        let about_access = [
            "login",
            "access",
            "authent",
            "refused",
            "permission",
            "not_allowed",
        ]
        .iter()
        .any(|w| lower.contains(w));
        if about_access {
            OutputError::unavailable(ErrorCategory::Auth, text)
        } else {
            OutputError::permanent(ErrorCategory::InvalidData, text)
        }
    }
}

fn lost(what: &str) -> OutputError {
    OutputError::transient(ErrorCategory::Connection, format!("STOMP: {what}"))
}

async fn read_frame(r: &mut BufReader<OwnedReadHalf>) -> Result<Frame, OutputError> {
    let mut line = String::new();
    // Heart-beats and frame separators are bare end-of-lines.
    loop {
        line.clear();
        let n = r
            .read_line(&mut line)
            .await
            .map_err(|e| error_mapping::io_error("STOMP read", &e))?;
        if n == 0 {
            return Err(lost("connection closed by the broker"));
        }
        if !line.trim_end_matches(['\r', '\n']).is_empty() {
            break;
        }
    }
    let mut frame = Frame {
        command: line.trim_end_matches(['\r', '\n']).to_owned(),
        ..Frame::default()
    };
    loop {
        line.clear();
        r.read_line(&mut line)
            .await
            .map_err(|e| error_mapping::io_error("STOMP read", &e))?;
        let l = line.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            frame.headers.push((k.to_owned(), v.to_owned()));
        }
        if frame.headers.len() > 1000 {
            return Err(lost("frame with too many headers"));
        }
    }
    let length = frame
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok());
    match length {
        Some(n) if n <= MAX_FRAME => {
            frame.body = vec![0; n];
            r.read_exact(&mut frame.body)
                .await
                .map_err(|e| error_mapping::io_error("STOMP read", &e))?;
            let mut nul = [0u8; 1];
            r.read_exact(&mut nul)
                .await
                .map_err(|e| error_mapping::io_error("STOMP read", &e))?;
        }
        Some(_) => return Err(lost("frame larger than 1 MiB")),
        None => {
            r.read_until(0, &mut frame.body)
                .await
                .map_err(|e| error_mapping::io_error("STOMP read", &e))?;
            frame.body.pop();
        }
    }
    Ok(frame)
}

type Waiters = Arc<Mutex<Option<HashMap<String, oneshot::Sender<Result<(), OutputError>>>>>>;

/// One STOMP connection: the writer, and the receipts its reader task is waiting for (`None`
/// once the connection is gone).
struct StompConn {
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    waiters: Waiters,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for StompConn {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl StompConn {
    async fn connect(s: &StompServer) -> Result<StompConn, OutputError> {
        within(STOMP_TIMEOUT, "connecting to the STOMP broker", async {
            // Connects to the addresses the policy checked: no second lookup.
            let addrs = admission::admit(&s.host, s.port, s.strict, &[]).await?;
            let stream = TcpStream::connect(&addrs[..])
                .await
                .map_err(|e| error_mapping::io_error("STOMP connect", &e))?;
            let _ = stream.set_nodelay(true);
            let (read, mut write) = stream.into_split();
            let mut connect = format!(
                "CONNECT\naccept-version:1.2\nhost:{}\nheart-beat:0,0\n",
                s.vhost
            );
            if let Some(login) = &s.login {
                connect.push_str(&format!("login:{login}\n"));
            }
            if let Some(pass) = &s.passcode {
                connect.push_str(&format!("passcode:{}\n", pass.expose()));
            }
            connect.push_str("\n\0");
            write
                .write_all(connect.as_bytes())
                .await
                .map_err(|e| error_mapping::io_error("STOMP connect", &e))?;
            let mut reader = BufReader::new(read);
            let first = read_frame(&mut reader).await?;
            match first.command.as_str() {
                "CONNECTED" => {}
                "ERROR" => return Err(first.error()),
                other => return Err(lost(&format!("unexpected {other} frame"))),
            }
            let waiters: Waiters = Arc::new(Mutex::new(Some(HashMap::new())));
            let w = waiters.clone();
            // One receipt reader per STOMP connection (output instance).
            let reader = tokio::spawn(async move {
                let end = loop {
                    match read_frame(&mut reader).await {
                        Ok(f) if f.command == "RECEIPT" => {
                            let id = f.header("receipt-id").unwrap_or_default().to_owned();
                            let mut guard = w.lock().unwrap_or_else(|e| e.into_inner());
                            if let Some(tx) = guard.as_mut().and_then(|m| m.remove(&id)) {
                                let _ = tx.send(Ok(()));
                            }
                        }
                        Ok(f) if f.command == "ERROR" => {
                            let err = f.error();
                            let id = f.header("receipt-id").map(str::to_owned);
                            let mut guard = w.lock().unwrap_or_else(|e| e.into_inner());
                            if let Some(tx) = id.and_then(|id| guard.as_mut()?.remove(&id)) {
                                let _ = tx.send(Err(err));
                            }
                            break lost("the broker closed the connection after an ERROR frame");
                        }
                        Ok(_) => {}
                        Err(e) => break e,
                    }
                };
                let pending = w.lock().unwrap_or_else(|e| e.into_inner()).take();
                for (_, tx) in pending.into_iter().flatten() {
                    let _ = tx.send(Err(end.clone()));
                }
            });
            Ok(StompConn {
                writer: tokio::sync::Mutex::new(write),
                waiters,
                reader,
            })
        })
        .await
    }

    fn is_open(&self) -> bool {
        self.waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    async fn send(&self, frame: &[u8], receipt: String) -> Result<(), OutputError> {
        let (tx, rx) = oneshot::channel();
        match self
            .waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            Some(m) => m.insert(receipt.clone(), tx),
            None => return Err(lost("connection closed")),
        };
        let written = {
            let mut w = self.writer.lock().await;
            w.write_all(frame).await
        };
        if let Err(e) = written {
            if let Some(m) = self
                .waiters
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_mut()
            {
                m.remove(&receipt);
            }
            return Err(error_mapping::io_error("STOMP send", &e));
        }
        within(STOMP_TIMEOUT, "STOMP receipt", async {
            rx.await.unwrap_or_else(|_| Err(lost("connection closed")))
        })
        .await
    }
}

/// The shared handle of one connection entry: the current connection, replaced once closed.
struct StompClient {
    server: StompServer,
    current: tokio::sync::Mutex<Option<Arc<StompConn>>>,
}

impl StompClient {
    async fn conn(&self) -> Result<Arc<StompConn>, OutputError> {
        let mut current = self.current.lock().await;
        if let Some(c) = current.as_ref().filter(|c| c.is_open()) {
            return Ok(c.clone());
        }
        let c = Arc::new(StompConn::connect(&self.server).await?);
        *current = Some(c.clone());
        Ok(c)
    }
}

struct ActiveMq {
    destination: String,
    persistent: bool,
    server: StompServer,
    shared: Arc<SharedClients>,
    client: ClientSlot<StompClient>,
}

impl std::fmt::Debug for ActiveMq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActiveMq")
            .field("destination", &self.destination)
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl ActiveMq {
    async fn conn(&self) -> Result<Arc<StompConn>, OutputError> {
        let server = &self.server;
        let client = self
            .client
            .get_or(self.shared.get_or_connect(&server.key, || async {
                Ok(StompClient {
                    server: server.clone(),
                    current: tokio::sync::Mutex::new(None),
                })
            }))
            .await?;
        client.conn().await
    }

    fn frame(&self, d: &Delivery, receipt: &str) -> Vec<u8> {
        let body = d.payload_json();
        let mut head = format!(
            "SEND\ndestination:{}\ncontent-type:application/json\ncontent-length:{}\n\
             persistent:{}\nwebhook-message-id:{}\nreceipt:{receipt}\n",
            self.destination,
            body.len(),
            self.persistent,
            escape(&d.message_id),
        );
        for (k, v) in &d.headers {
            if matches!(
                k.as_str(),
                "content-type" | "content-length" | "receipt" | "destination"
            ) {
                continue;
            }
            head.push_str(&format!("{}:{}\n", escape(k), escape(v)));
        }
        head.push('\n');
        let mut frame = head.into_bytes();
        frame.extend_from_slice(body.as_bytes());
        frame.push(0);
        frame
    }
}

#[async_trait::async_trait]
impl Output for ActiveMq {
    async fn setup(&self) -> Result<(), OutputError> {
        self.conn().await.map(|_| ())
    }

    async fn process(&self, delivery: &Delivery) -> Result<(), OutputError> {
        let conn = self.conn().await?;
        let receipt = uuid::Uuid::new_v4().to_string();
        conn.send(&self.frame(delivery, &receipt), receipt).await
    }

    async fn teardown(&self) {
        self.client.release();
    }
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn header_values_are_escaped_as_stomp_1_2_requires() {
        assert_eq!(escape("a:b\nc\\d\re"), "a\\cb\\nc\\\\d\\re");
    }
}
