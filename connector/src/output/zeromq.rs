//! `zeromq` (`docs/reference/module-contract.md` §3.14, feature `zeromq`): one ZeroMQ socket per instance, created at
//! setup, over the pure-Rust `zeromq` crate (no libzmq).
//!
//! - **Socket types:** `PUB` (the default), `PUSH`, `REQ` and `DEALER`. The socket connects to
//!   `endpoint` unless `bind: true` (the original always bound and could not even be built,
//!
//! - **Frames:** each message is one frame holding the payload JSON.
//! - **Success:** `PUB`, `PUSH` and `DEALER` once the frame is handed to the peer's queue (`PUB`
//!   gives no delivery guarantee: use `PUSH`); `REQ` once the reply arrived within `timeout`.
//! - **Concurrency and cancellation (§2.2 rules 4, 5):** the socket sits behind an async mutex,
//!   so sends are serialised and a `REQ` waits for its reply before the next request. It is
//!   taken out of its slot for the duration of one send; when that call is dropped or fails, a
//!   connecting socket (and any `REQ`, whose reply could otherwise answer the next request) is
//!   discarded and the next message opens a fresh one; a bound `PUB`/`PUSH`/`DEALER` socket is
//!   kept after a failure, so its peers stay connected.
//! - **Errors:** everything on the wire is `Transient` (no peer, peer gone, send or reply past
//!   `timeout`); an endpoint this process cannot bind is `Unavailable`.
//! - `high_water_mark` is read and checked, but the crate's per-peer queue has a fixed size; a
//!   send that stays blocked longer than `timeout` is `Transient` either way.
//! - **Outbound policy** (`docs/reference/module-contract.md` §2.3): a connecting `tcp://` socket, each time one is
//!   opened, first resolves the endpoint's host through [`admission::admit`]; the crate is then
//!   given the endpoint as written, so a name keeps all its addresses (the crate tries each),
//!   and it resolves the name again on each of its connect attempts (it retries a refused
//!   connection until `timeout`) without the check. `ipc://` endpoints and bound sockets have
//!   no host to check.

use std::time::Duration;

use zeromq::{
    DealerSocket, PubSocket, PushSocket, ReqSocket, Socket, SocketRecv, SocketSend, ZmqError,
    ZmqMessage,
};

use super::admission;
use super::error_mapping;
use super::settings;
use super::{Delivery, ErrorCategory, ModuleSettings, Output, OutputError};
use crate::settings::Problems;

/// The socket types this module can send on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Pub,
    Push,
    Req,
    Dealer,
}

/// Builds the module, recording configuration problems.
pub fn build(settings: &ModuleSettings<'_>, problems: &mut Problems) -> Option<Box<dyn Output>> {
    let before = problems.errors.len();
    let mut mc = settings.config_reader();
    let bind = mc.boolean(problems, "bind", false);
    let allowed_hosts = mc
        .string_list(problems, "allowed_hosts")
        .unwrap_or_default();
    let endpoint = match mc.string(problems, "endpoint") {
        Some(e) => check_endpoint(settings, problems, &e, bind, &allowed_hosts).then_some(e),
        None => {
            if mc.get("endpoint").is_none() {
                mc.error(problems, "endpoint", "missing field");
            }
            None
        }
    };
    let kind = match mc.choice(
        problems,
        "socket_type",
        "PUB",
        &["PUB", "PUSH", "REQ", "DEALER"],
    ) {
        "PUSH" => Kind::Push,
        "REQ" => Kind::Req,
        "DEALER" => Kind::Dealer,
        _ => Kind::Pub,
    };
    let timeout = mc.number_in(
        problems,
        "timeout",
        10.0,
        |t| t > 0.0 && t <= 3600.0,
        "above 0 and at most 3600 seconds",
    );
    if mc.get("high_water_mark").is_some() {
        mc.integer_in(problems, "high_water_mark", 1000, 1, 1_000_000);
        settings.warn(
            problems,
            "module-config.high_water_mark",
            "not adjustable with the pure-Rust ZeroMQ socket (its per-peer queue has a fixed \
             size); a send blocked longer than timeout fails as Transient",
        );
    }
    mc.finish(problems, false);
    let out: Box<dyn Output> = Box::new(ZeroMq {
        endpoint: endpoint?,
        kind,
        bind,
        timeout: Duration::from_secs_f64(timeout),
        strict: settings.outbound_strict,
        allowed_hosts,
        socket: tokio::sync::Mutex::new(None),
    });
    settings::unless_errors(problems, before, Some(out))
}

/// Checks `endpoint`: `tcp://host:port` (outbound policy when connecting) or `ipc://path`;
/// `inproc://` cannot reach another process and is refused.
fn check_endpoint(
    s: &ModuleSettings<'_>,
    p: &mut Problems,
    text: &str,
    bind: bool,
    allowed_hosts: &[String],
) -> bool {
    const KEY: &str = "module-config.endpoint";
    let scheme = text.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("inproc") => {
            s.error(
                p,
                KEY,
                "inproc:// only reaches sockets inside this process; use tcp:// or ipc://",
            );
            return false;
        }
        Some("tcp") if !bind => {
            if !s.check_url(p, "endpoint", text, &["tcp"], allowed_hosts) {
                return false;
            }
        }
        Some("tcp" | "ipc") => {}
        _ => {
            s.error(p, KEY, "must start with tcp:// or ipc://");
            return false;
        }
    }
    if let Err(e) = text.parse::<zeromq::Endpoint>() {
        s.error(p, KEY, format!("not a ZeroMQ endpoint: {e}"));
        return false;
    }
    true
}

/// The open socket of an instance.
enum Open {
    Pub(PubSocket),
    Push(PushSocket),
    Req(ReqSocket),
    Dealer(DealerSocket),
}

struct ZeroMq {
    endpoint: String,
    kind: Kind,
    bind: bool,
    timeout: Duration,
    /// `outbound_policy: strict`, applied to every address the host resolves to.
    strict: bool,
    /// Hosts exempt from the address rules (`allowed_hosts`).
    allowed_hosts: Vec<String>,
    socket: tokio::sync::Mutex<Option<Open>>,
}

impl std::fmt::Debug for ZeroMq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZeroMq")
            .field("endpoint", &self.endpoint)
            .field("kind", &self.kind)
            .field("bind", &self.bind)
            .finish_non_exhaustive()
    }
}

/// Binds or connects `socket` to `endpoint`.
async fn attach<S: Socket>(
    mut socket: S,
    endpoint: &str,
    bind: bool,
    limit: Duration,
) -> Result<S, OutputError> {
    if bind {
        socket.bind(endpoint).await.map_err(|e| {
            OutputError::unavailable(
                ErrorCategory::Connection,
                format!("binding ZeroMQ socket to {endpoint}: {e}"),
            )
        })?;
        return Ok(socket);
    }
    // The crate retries a refused connection forever; the timeout turns that into an error.
    match tokio::time::timeout(limit, socket.connect(endpoint)).await {
        Ok(Ok(())) => Ok(socket),
        Ok(Err(e)) => Err(wire_error(&format!("connecting to {endpoint}"), &e)),
        Err(_) => Err(OutputError::transient(
            ErrorCategory::Connection,
            format!(
                "connecting to {endpoint}: no peer accepted within {} s",
                limit.as_secs_f64()
            ),
        )),
    }
}

/// A failure on the wire: always `Transient`.
fn wire_error(what: &str, e: &ZmqError) -> OutputError {
    match e {
        ZmqError::Network(io) => error_mapping::io_error(what, io),
        other => OutputError::transient(ErrorCategory::Connection, format!("{what}: {other}")),
    }
}

impl ZeroMq {
    /// The outbound policy for a connecting `tcp://` endpoint.
    async fn admit(&self) -> Result<(), OutputError> {
        if self.bind {
            return Ok(());
        }
        let Ok(zeromq::Endpoint::Tcp(host, port)) = self.endpoint.parse::<zeromq::Endpoint>()
        else {
            return Ok(());
        };
        let host = host.to_string();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        error_mapping::within(self.timeout, "resolving the ZeroMQ endpoint", async {
            admission::admit(host, port, self.strict, &self.allowed_hosts).await
        })
        .await
        .map(|_| ())
    }

    async fn open(&self) -> Result<Open, OutputError> {
        self.admit().await?;
        let (ep, bind, t) = (self.endpoint.as_str(), self.bind, self.timeout);
        Ok(match self.kind {
            Kind::Pub => Open::Pub(attach(PubSocket::new(), ep, bind, t).await?),
            Kind::Push => Open::Push(attach(PushSocket::new(), ep, bind, t).await?),
            Kind::Req => Open::Req(attach(ReqSocket::new(), ep, bind, t).await?),
            Kind::Dealer => Open::Dealer(attach(DealerSocket::new(), ep, bind, t).await?),
        })
    }

    /// Sends one frame (and for `REQ` waits for the reply), all within `timeout`.
    async fn send(&self, socket: &mut Open, frame: Vec<u8>) -> Result<(), OutputError> {
        let message = ZmqMessage::from(frame);
        let limit = self.timeout;
        let what = format!("ZeroMQ send to {}", self.endpoint);
        let exchange = async {
            match socket {
                Open::Pub(s) => s.send(message).await,
                Open::Push(s) => s.send(message).await,
                Open::Dealer(s) => s.send(message).await,
                Open::Req(s) => {
                    s.send(message).await?;
                    s.recv().await.map(|_| ())
                }
            }
        };
        match tokio::time::timeout(limit, exchange).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(wire_error(&what, &e)),
            Err(_) => Err(OutputError::transient(
                ErrorCategory::Timeout,
                format!(
                    "{what}: {} within {} s",
                    if self.kind == Kind::Req {
                        "no reply"
                    } else {
                        "not accepted"
                    },
                    limit.as_secs_f64()
                ),
            )),
        }
    }
}

#[async_trait::async_trait]
impl Output for ZeroMq {
    async fn setup(&self) -> Result<(), OutputError> {
        let mut slot = self.socket.lock().await;
        if slot.is_none() {
            *slot = Some(self.open().await?);
        }
        Ok(())
    }

    async fn process(&self, delivery: &Delivery) -> Result<(), OutputError> {
        let mut slot = self.socket.lock().await;
        // Out of the slot while in use: a dropped call drops the socket with it (§2.2 rule 5).
        let mut socket = match slot.take() {
            Some(s) => s,
            None => self.open().await?,
        };
        let result = self
            .send(&mut socket, delivery.payload_json().into_bytes())
            .await;
        if result.is_ok() || (self.bind && self.kind != Kind::Req) {
            *slot = Some(socket);
        }
        result
    }

    async fn teardown(&self) {
        let socket = self.socket.lock().await.take();
        match socket {
            Some(Open::Pub(s)) => drop(s.close().await),
            Some(Open::Push(s)) => drop(s.close().await),
            Some(Open::Req(s)) => drop(s.close().await),
            Some(Open::Dealer(s)) => drop(s.close().await),
            None => {}
        }
    }
}
