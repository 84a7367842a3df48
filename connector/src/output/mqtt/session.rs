//! The shared client of one connection entry and its sessions, independent of the protocol
//! version: a session is one connection and the task that drives its event loop; publishes wait
//! for their acknowledgement in [`Pending`], paired by packet id. The version-specific parts
//! (options, publish, what an event means) are in `v311` and `v5`, behind [`Client`] and
//! [`Events`].

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use rumqttc::QoS;
use tokio::sync::{oneshot, watch};

use super::super::admission;
use super::super::error_mapping::within;
use super::config::{MqttServer, Version};
use super::{ErrorCategory, MQTT_TIMEOUT, OutputError, v5, v311};

/// What an event of the client's event loop means to the session.
#[derive(Debug)]
pub(super) enum Step {
    /// The broker accepted the connection; MQTT 5 brokers may announce their Maximum Packet
    /// Size.
    Connected { max_packet: Option<u32> },
    /// A publish was written to the socket with this packet id (0 at QoS 0).
    Sent(u16),
    /// The publish with this packet id is acknowledged: `PUBACK` (QoS 1) or `PUBCOMP` (QoS 2).
    Done(u16),
    /// The broker refused the publish with this packet id (an MQTT 5 failure reason code).
    Refused(u16, OutputError),
    /// Nothing the session waits for.
    Other,
}

/// The client half of a session: hands publishes to the event loop.
enum Client {
    V311(rumqttc::AsyncClient),
    V5(rumqttc::v5::AsyncClient),
}

/// The event loop half of a session, driven by the session's task. (Boxed: the v5 event loop
/// is half as large again as the 3.1.1 one.)
enum Events {
    V311(Box<rumqttc::EventLoop>),
    V5(Box<v5::Events>),
}

impl Events {
    async fn next(&mut self) -> Result<Step, OutputError> {
        match self {
            Events::V311(events) => v311::step(events.poll().await),
            Events::V5(events) => events.next().await,
        }
    }

    /// Why the connection cannot send any more publishes, if it cannot.
    fn exhausted(&self) -> Option<OutputError> {
        match self {
            Events::V311(_) => None,
            Events::V5(events) => events.exhausted(),
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
    /// Applies one step: a written publish takes the oldest queued waiter (answered at once at
    /// QoS 0), an acknowledgement answers the waiter of its packet id.
    fn apply(&mut self, step: Step) {
        match step {
            Step::Sent(pkid) => {
                if let Some((qos, w)) = self.queued.pop_front() {
                    if qos == QoS::AtMostOnce {
                        let _ = w.send(Ok(()));
                    } else {
                        self.inflight.insert(pkid, w);
                    }
                }
            }
            Step::Done(pkid) => {
                if let Some(w) = self.inflight.remove(&pkid) {
                    let _ = w.send(Ok(()));
                }
            }
            Step::Refused(pkid, err) => {
                if let Some(w) = self.inflight.remove(&pkid) {
                    let _ = w.send(Err(err));
                }
            }
            Step::Connected { .. } | Step::Other => {}
        }
    }

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
    Up { max_packet: Option<u32> },
    Down(OutputError),
}

/// One connection to the broker and the task that drives it.
struct Session {
    client: Client,
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
        let (client, mut events) = match server.version {
            Version::V311 => {
                let (client, events) = v311::start(server);
                (Client::V311(client), Events::V311(Box::new(events)))
            }
            Version::V5 => {
                let (client, events) = v5::start(server);
                (Client::V5(client), Events::V5(Box::new(events)))
            }
        };
        let pending = Arc::new(Mutex::new(Pending::default()));
        let (state_tx, state) = watch::channel(State::Connecting);
        let p = pending.clone();
        // One event loop per MQTT session (output instance).
        let task = tokio::spawn(async move {
            loop {
                let step = events.next().await;
                let mut pending = p.lock().unwrap_or_else(|e| e.into_inner());
                match step {
                    Ok(Step::Connected { max_packet }) => {
                        let _ = state_tx.send(State::Up { max_packet });
                    }
                    Ok(step) => {
                        // A connection that cannot send any more is marked down before the
                        // step's publisher hears back, so that its next publish starts a new
                        // session instead of waiting on this one.
                        let end = events.exhausted();
                        if let Some(err) = &end {
                            let _ = state_tx.send(State::Down(err.clone()));
                        }
                        pending.apply(step);
                        if let Some(err) = end {
                            pending.fail_all(&err);
                            return;
                        }
                    }
                    Err(err) => {
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
                    State::Up { .. } => return Ok(()),
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

    /// Hands a publish to the event loop.
    async fn publish(
        &self,
        topic: &str,
        qos: QoS,
        retain: bool,
        body: Vec<u8>,
    ) -> Result<(), OutputError> {
        match &self.client {
            Client::V311(client) => v311::publish(client, topic, qos, retain, body).await,
            Client::V5(client) => {
                let max_packet = match &*self.state.borrow() {
                    State::Up { max_packet } => *max_packet,
                    _ => None,
                };
                v5::publish(client, topic, qos, retain, body, max_packet).await
            }
        }
    }
}

/// The shared client of one connection entry: the current session, replaced after a failure.
pub(super) struct MqttClient {
    server: MqttServer,
    session: tokio::sync::Mutex<Option<Arc<Session>>>,
    /// Keeps request order and waiter order the same.
    publish_order: tokio::sync::Mutex<()>,
}

impl MqttClient {
    /// A client that connects on first use.
    pub(super) fn new(server: MqttServer) -> Self {
        MqttClient {
            server,
            session: tokio::sync::Mutex::new(None),
            publish_order: tokio::sync::Mutex::new(()),
        }
    }

    /// Waits until the current session (a new one if there is none or it failed) is connected.
    pub(super) async fn connect(&self) -> Result<(), OutputError> {
        self.session().await.map(|_| ())
    }

    async fn session(&self) -> Result<Arc<Session>, OutputError> {
        let mut current = self.session.lock().await;
        let session = match current.as_ref() {
            Some(s) if !s.is_down() => s.clone(),
            _ => {
                // Each session is one connection: checked here, then rumqttc resolves the
                // name again to connect (kept for TLS server-name verification).
                let server = &self.server;
                within(MQTT_TIMEOUT, "resolving the MQTT broker", async {
                    admission::admit(&server.host, server.port, server.strict, &[]).await
                })
                .await?;
                let s = Arc::new(Session::start(server));
                *current = Some(s.clone());
                s
            }
        };
        drop(current);
        session.connected().await?;
        Ok(session)
    }

    /// Publishes `body` and waits for what means success at `qos` (`docs/reference/module-contract.md` §3.13).
    pub(super) async fn publish(
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
            if let Err(e) = session.publish(topic, qos, retain, body).await {
                // The request never reached the event loop: take our waiter back out.
                let mut pending = session.pending.lock().unwrap_or_else(|e| e.into_inner());
                pending.queued.pop_back();
                return Err(e);
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
