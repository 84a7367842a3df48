//! Acks for connections held by another relay instance.
//!
//! Behind a load balancer, a connector's `POST /connect/ack` may reach an instance other than
//! the one that streams to it. That instance does not hold the lease, so it asks its peers over
//! Redis Pub/Sub (the same Redis as the shared state store):
//!
//! - the request goes to `{prefix}:acks:requests` as JSON: a request id, the asking instance,
//!   the channels the presented token opens, the connection id and the ack entries;
//! - every instance (the asking one too) answers on `{prefix}:acks:replies:{asker}`: either the
//!   settle results, when it holds that connection, or "not here";
//! - the asker waits for the first "found" answer, or for as many "not here" answers as
//!   `PUBLISH` reported subscribers, or for [`ANSWER_WITHIN`].
//!
//! The instance that holds the lease settles it, so its in-flight accounting, `max_in_flight`
//! slots and lease timers stay right; nothing is settled twice. The token was checked by the
//! asking instance; a peer only settles on channels that token opens.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};
use webhook_connect_buffer::redis::connection::{Conn, Endpoint};
use webhook_connect_buffer::redis::pubsub::follow_channel;
use webhook_connect_protocol::ConnectionId;
use webhook_connect_protocol::ack::AckRequest;
use webhook_connect_protocol::frames::AckItemResult;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::channels::Channel;
use crate::delivery::requests::settle_detached;

/// How long the asking instance waits for its peers.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// Peer requests received and not yet being answered; more are dropped (their askers time out
/// and answer 503, and the connector retries).
const REQUEST_QUEUE: usize = 1024;

/// Peer requests answered at the same time.
const MAX_CONCURRENT_ANSWERS: usize = 64;

/// Where a connection's acks were settled.
#[derive(Debug)]
pub enum PeerOutcome {
    /// A peer held the connection; results in request order.
    Settled(Vec<AckItemResult>),
    /// Every instance answered, and none holds the connection.
    NotFound,
    /// Redis could not be reached, or a peer did not answer in time.
    Unavailable,
}

#[derive(Debug, Serialize, Deserialize)]
struct Request {
    id: u64,
    from: String,
    channels: Vec<String>,
    connection: String,
    entries: Vec<AckRequest>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Reply {
    id: u64,
    /// `None`: the answering instance does not hold the connection.
    results: Option<Vec<AckItemResult>>,
}

/// The Redis pieces [`PeerAcks`] runs on (taken from the shared state store).
#[derive(Debug)]
pub struct PeerLink {
    /// For the two subscriptions.
    pub client: Endpoint,
    /// For publishing.
    pub conn: Conn,
    /// The state store's key prefix.
    pub prefix: String,
    /// This instance's id.
    pub instance: String,
}

/// Asks peers to settle acks, and settles theirs.
pub struct PeerAcks {
    conn: Conn,
    client: Endpoint,
    requests: String,
    /// `{prefix}:acks:replies:`; an instance's own reply channel adds its id.
    reply_prefix: String,
    instance: String,
    next_id: AtomicU64,
    waiting: Mutex<HashMap<u64, Arc<Answers>>>,
    stop: Mutex<Vec<oneshot::Sender<()>>>,
}

impl std::fmt::Debug for PeerAcks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerAcks")
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

/// What the peers answered one request so far: a fixed size whatever they send.
#[derive(Debug, Default)]
struct Answers {
    state: Mutex<AnswerState>,
    arrived: Notify,
}

#[derive(Debug, Default)]
struct AnswerState {
    found: Option<Vec<AckItemResult>>,
    not_here: i64,
}

impl Answers {
    fn add(&self, results: Option<Vec<AckItemResult>>) {
        {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            match results {
                Some(results) => {
                    state.found.get_or_insert(results);
                }
                None => state.not_here += 1,
            }
        }
        self.arrived.notify_one();
    }

    /// Waits for a "found" answer, or for `listeners` "not here" answers.
    async fn outcome(&self, listeners: i64) -> PeerOutcome {
        loop {
            let arrived = self.arrived.notified();
            {
                let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(results) = state.found.take() {
                    return PeerOutcome::Settled(results);
                }
                if state.not_here >= listeners {
                    return PeerOutcome::NotFound;
                }
            }
            arrived.await;
        }
    }
}

/// Removes a request from the waiting table however the wait ends.
struct Waiting<'a> {
    acks: &'a PeerAcks,
    id: u64,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.acks
            .waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

impl PeerAcks {
    /// Prepares the link; nothing is subscribed until [`spawn`].
    pub fn new(link: PeerLink) -> PeerAcks {
        PeerAcks {
            requests: format!("{}:acks:requests", link.prefix),
            reply_prefix: format!("{}:acks:replies:", link.prefix),
            conn: link.conn,
            client: link.client,
            instance: link.instance,
            next_id: AtomicU64::new(1),
            waiting: Mutex::new(HashMap::new()),
            stop: Mutex::new(Vec::new()),
        }
    }

    /// Asks the other instances to settle `entries` for `connection` on one of `channels`.
    pub async fn settle(
        &self,
        channels: Vec<String>,
        connection: &ConnectionId,
        entries: &[AckRequest],
    ) -> PeerOutcome {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let answers = Arc::new(Answers::default());
        self.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, answers.clone());
        let _waiting = Waiting { acks: self, id };
        let request = Request {
            id,
            from: self.instance.clone(),
            channels,
            connection: connection.as_str().to_owned(),
            entries: entries.to_vec(),
        };
        let Ok(text) = serde_json::to_string(&request) else {
            return PeerOutcome::Unavailable;
        };
        let mut conn = self.conn.clone();
        let listeners = match tokio::time::timeout(
            ANSWER_WITHIN,
            conn.publish::<_, _, i64>(&self.requests, text),
        )
        .await
        {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "Cannot ask the other relay instances about an ack");
                return PeerOutcome::Unavailable;
            }
            Err(_) => return PeerOutcome::Unavailable,
        };
        if listeners == 0 {
            // Not even this instance's own subscription heard it: the link is down.
            return PeerOutcome::Unavailable;
        }
        tokio::time::timeout(ANSWER_WITHIN, answers.outcome(listeners))
            .await
            .unwrap_or(PeerOutcome::Unavailable)
    }

    fn replies_of(&self, instance: &str) -> String {
        format!("{}{instance}", self.reply_prefix)
    }

    fn deliver_reply(&self, text: &str) {
        let Ok(reply) = serde_json::from_str::<Reply>(text) else {
            tracing::debug!("Ignoring a malformed peer ack reply");
            return;
        };
        let answers = self
            .waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&reply.id)
            .cloned();
        if let Some(answers) = answers {
            answers.add(reply.results);
        }
    }

    /// Stops both subscriptions.
    pub fn close(&self) {
        for stop in self
            .stop
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            let _ = stop.send(());
        }
    }
}

/// Looks a channel up by name on this instance.
pub(crate) type FindChannel = Arc<dyn Fn(&str) -> Option<Arc<Channel>> + Send + Sync>;

/// Follows the request and reply channels until `stop`, answering requests about connections
/// on the channels `find_channel` knows.
pub(crate) fn spawn(
    peers: Arc<PeerAcks>,
    tracker: &TaskTracker,
    stop: CancellationToken,
    find_channel: FindChannel,
) {
    let (stop_requests, stop_requests_rx) = oneshot::channel();
    let (stop_replies, stop_replies_rx) = oneshot::channel();
    peers
        .stop
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .extend([stop_requests, stop_replies]);
    let (incoming, mut requests) = mpsc::channel::<String>(REQUEST_QUEUE);
    tracker.spawn(follow_channel(
        peers.client.clone(),
        peers.requests.clone(),
        ANSWER_WITHIN,
        stop_requests_rx,
        || {},
        move |text| {
            if let Err(mpsc::error::TrySendError::Full(_)) = incoming.try_send(text) {
                tracing::warn!(
                    "Too many peer ack requests waiting; one dropped (its asker retries)"
                );
            }
        },
    ));
    let replies = peers.clone();
    tracker.spawn(follow_channel(
        peers.client.clone(),
        peers.replies_of(&peers.instance),
        ANSWER_WITHIN,
        stop_replies_rx,
        || {},
        move |text| replies.deliver_reply(&text),
    ));
    let answers = tracker.clone();
    let answering = Arc::new(Semaphore::new(MAX_CONCURRENT_ANSWERS));
    tracker.spawn(async move {
        loop {
            let text = tokio::select! {
                text = requests.recv() => text,
                _ = stop.cancelled() => break,
            };
            let Some(text) = text else { break };
            match serde_json::from_str::<Request>(&text) {
                Ok(request) => {
                    // At most MAX_CONCURRENT_ANSWERS answer tasks; meanwhile requests wait in
                    // the bounded queue.
                    let permit = tokio::select! {
                        permit = answering.clone().acquire_owned() => permit,
                        _ = stop.cancelled() => break,
                    };
                    let Ok(permit) = permit else { break };
                    let find_channel = find_channel.clone();
                    let peers = peers.clone();
                    answers.spawn(async move {
                        answer(&*find_channel, &peers, request).await;
                        drop(permit);
                    });
                }
                Err(e) => tracing::debug!(error = %e, "Ignoring a malformed peer ack request"),
            }
        }
        peers.close();
    });
}

/// Settles a peer's request when this instance holds the connection, and answers either way.
async fn answer(
    find_channel: &(dyn Fn(&str) -> Option<Arc<Channel>> + Send + Sync),
    peers: &PeerAcks,
    request: Request,
) {
    let connection = ConnectionId::from_peer(request.connection.as_str());
    let held = request.channels.iter().find_map(|name| {
        let channel = find_channel(name)?;
        let conn = channel.hub.find(&connection)?;
        Some((channel, conn))
    });
    let results = match held {
        Some((channel, conn)) => {
            conn.touch_alive();
            Some(settle_detached(&channel.hub, conn, request.entries).await)
        }
        None => None,
    };
    let reply = Reply {
        id: request.id,
        results,
    };
    let Ok(text) = serde_json::to_string(&reply) else {
        return;
    };
    let target = peers.replies_of(&request.from);
    let mut conn = peers.conn.clone();
    if let Err(e) = conn.publish::<_, _, i64>(target, text).await {
        tracing::warn!(error = %e, "Cannot answer another relay instance about an ack");
    }
}
