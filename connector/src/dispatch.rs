//! The per-channel dispatcher: takes each received message, skips the ones already completed
//! forwards the others with at most `max_concurrent_requests` target calls at once, and
//! sends the ack or nack on the connection that delivered the message.
//!
//! Memory is bounded: a message is held from receipt until its ack or nack is sent, under
//! one of `2 × max_concurrent_requests` holding permits, and the stream readers wait for a permit
//! before taking the next message. Ordered connections (the relay's `max_in_flight` is 1) are
//! processed one message at a time in arrival order.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use webhook_connect_protocol::WebhookMessage;
use webhook_connect_protocol::report::DeliveryReport;

use crate::ack::Decision;
use crate::ack::{AckError, AckSink};
use crate::completion::CompletionRecord;
use crate::config::ChannelConfig;
use crate::forward;
use crate::health::ChannelState;
use crate::lease::{self, LEASE_LOST, Lease, Leases};
use crate::pipeline::Pipeline;

struct Job {
    msg: Box<WebhookMessage>,
    held: OwnedSemaphorePermit,
    acks: AckSink,
}

struct Core {
    channel: Arc<ChannelConfig>,
    client: reqwest::Client,
    /// Module mode: the channel's pipeline (HTTP mode when `None`).
    pipeline: Option<Arc<Pipeline>>,
    permits: Semaphore,
    record: Arc<CompletionRecord>,
    state: Arc<ChannelState>,
    /// Cancelled when the drain timeout ran out: remaining work stops and is nacked.
    work_cancel: CancellationToken,
    idle: Notify,
    /// Messages being worked on, so a redelivery that arrives meanwhile (for example after a
    /// reconnect) waits for that work instead of calling the target a second time. Bounded by
    /// the holding permits.
    in_progress: Mutex<HashMap<String, watch::Receiver<Option<Finished>>>>,
    /// Leases of the messages being worked on (`docs/reference/module-contract.md` §6 "Bounded by the lease").
    leases: Leases,
}

/// How the work on a message ended, for a redelivery of it that waited.
#[derive(Debug, Clone)]
struct Finished {
    decision: Decision,
    /// What the local delivery reported (for the relay's message trace).
    report: Option<DeliveryReport>,
    /// The lease ran out first: the decision is no answer for the redelivery.
    lease_lost: bool,
}

/// Either the work on a message is ours to do, or someone else's to wait for.
enum Claim {
    Mine(watch::Sender<Option<Finished>>),
    Theirs(watch::Receiver<Option<Finished>>),
}

/// Dispatcher of one channel; shared by its successive connections.
pub struct Dispatcher {
    core: Arc<Core>,
    holding: Arc<Semaphore>,
    capacity: usize,
    tracker: TaskTracker,
    ordered_tx: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("channel", &self.core.channel.channel)
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl Dispatcher {
    /// A dispatcher for `channel` delivering to HTTP targets with `client`.
    pub fn new(
        channel: Arc<ChannelConfig>,
        client: reqwest::Client,
        record: Arc<CompletionRecord>,
        state: Arc<ChannelState>,
    ) -> Self {
        Self::build(channel, client, None, record, state)
    }

    /// A dispatcher for `channel` delivering through the module `pipeline` (module mode).
    pub fn with_pipeline(
        channel: Arc<ChannelConfig>,
        pipeline: Arc<Pipeline>,
        record: Arc<CompletionRecord>,
        state: Arc<ChannelState>,
    ) -> Self {
        Self::build(
            channel,
            reqwest::Client::new(),
            Some(pipeline),
            record,
            state,
        )
    }

    fn build(
        channel: Arc<ChannelConfig>,
        client: reqwest::Client,
        pipeline: Option<Arc<Pipeline>>,
        record: Arc<CompletionRecord>,
        state: Arc<ChannelState>,
    ) -> Self {
        let concurrency = channel.max_concurrent_requests.max(1);
        let capacity = concurrency * 2;
        let core = Arc::new(Core {
            channel,
            client,
            pipeline,
            permits: Semaphore::new(concurrency),
            record,
            state,
            work_cancel: CancellationToken::new(),
            idle: Notify::new(),
            in_progress: Mutex::new(HashMap::new()),
            leases: Leases::default(),
        });
        let (ordered_tx, mut rx) = mpsc::channel::<Job>(capacity);
        let tracker = TaskTracker::new();
        let worker = core.clone();
        // The ordered worker: one per channel, fed by a bounded queue.
        tokio::spawn(async move {
            while let Some(job) = rx.recv().await {
                worker.process(job).await;
            }
        });
        Dispatcher {
            core,
            holding: Arc::new(Semaphore::new(capacity)),
            capacity,
            tracker,
            ordered_tx,
        }
    }

    /// Most messages held at once (`2 × max_concurrent_requests`).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Holding permits free now (long-poll asks for at most this many messages).
    pub fn available(&self) -> usize {
        self.holding.available_permits()
    }

    /// Waits for room to hold one more message.
    pub async fn hold(&self) -> Option<OwnedSemaphorePermit> {
        self.holding.clone().acquire_owned().await.ok()
    }

    /// The relay reported `message_id` as not in flight for this connector (an `ack_result`):
    /// work on it starts no further attempt.
    pub fn lease_lost(&self, message_id: &str) {
        self.core.leases.lost(message_id);
    }

    /// Messages currently held.
    pub fn in_flight(&self) -> u64 {
        self.core.state.in_flight.load(Ordering::Relaxed)
    }

    /// Starts work on `msg`; its ack or nack goes to `acks`. `ordered` processes it after every
    /// earlier ordered message.
    pub async fn dispatch(
        &self,
        msg: Box<WebhookMessage>,
        held: OwnedSemaphorePermit,
        acks: AckSink,
        ordered: bool,
    ) {
        self.core.state.received.fetch_add(1, Ordering::Relaxed);
        self.core.state.in_flight.fetch_add(1, Ordering::Relaxed);
        let job = Job { msg, held, acks };
        if ordered {
            if let Err(mpsc::error::SendError(job)) = self.ordered_tx.send(job).await {
                // The worker is gone (cannot happen while self lives); process inline.
                self.core.process(job).await;
            }
        } else {
            // One task per message in flight: the caller holds one of `capacity` permits
            // (`hold`) for each, so there are never more.
            let core = self.core.clone();
            self.tracker.spawn(async move { core.process(job).await });
        }
    }

    /// Waits up to `timeout` for every held message to be finished and acked or nacked; then
    /// cancels the rest (they are nacked with `retry:true` where the connection allows) and
    /// waits briefly for those nacks. Returns true when everything finished in time.
    pub async fn drain(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let finished = self.wait_idle(deadline).await;
        if !finished {
            tracing::warn!(
                channel = %self.core.channel.channel,
                in_flight = self.in_flight(),
                "Drain timeout reached; cancelling unfinished messages"
            );
            self.core.work_cancel.cancel();
            self.wait_idle(Instant::now() + Duration::from_secs(5))
                .await;
        }
        finished
    }

    async fn wait_idle(&self, deadline: Instant) -> bool {
        loop {
            let notified = self.core.idle.notified();
            if self.in_flight() == 0 {
                return true;
            }
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep_until(deadline) => return self.in_flight() == 0,
            }
        }
    }
}

impl Core {
    fn lock_in_progress(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, watch::Receiver<Option<Finished>>>> {
        self.in_progress.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn claim(&self, message_id: &str) -> Claim {
        let mut map = self.lock_in_progress();
        if let Some(rx) = map.get(message_id) {
            return Claim::Theirs(rx.clone());
        }
        let (tx, rx) = watch::channel(None);
        map.insert(message_id.to_owned(), rx);
        Claim::Mine(tx)
    }

    async fn process(&self, job: Job) {
        let Job { msg, held, acks } = job;
        let started = Instant::now();
        let (decision, report) = if self.record.contains(&msg.message_id) {
            self.state.deduplicated.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(message_id = %msg.message_id, "Already completed; acking again");
            (Decision::Ack, None)
        } else {
            self.work_on(&msg, &acks, started).await
        };
        match &decision {
            Decision::Ack => self.state.acked.fetch_add(1, Ordering::Relaxed),
            Decision::Nack { retry: true, .. } => {
                self.state.nacked_retry.fetch_add(1, Ordering::Relaxed)
            }
            Decision::Nack { retry: false, .. } => {
                self.state.nacked_no_retry.fetch_add(1, Ordering::Relaxed)
            }
        };
        match acks
            .send_reporting(&msg.message_id, &decision, report.as_ref())
            .await
        {
            Ok(()) => {}
            Err(AckError::NotInFlight) => {
                tracing::warn!(message_id = %msg.message_id, "Relay says the message is no longer in flight")
            }
            Err(e) => {
                tracing::warn!(message_id = %msg.message_id, error = %e, "Could not send ack/nack")
            }
        }
        drop(held);
        if self.state.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.idle.notify_waiters();
        }
    }

    /// Does the work on `msg`, or waits for the work already under way on the same message (a
    /// redelivery that arrived meanwhile). Work that stopped because its lease was lost decides
    /// nothing for a later delivery, which then does the work itself.
    async fn work_on(
        &self,
        msg: &WebhookMessage,
        acks: &AckSink,
        started: Instant,
    ) -> (Decision, Option<DeliveryReport>) {
        loop {
            match self.claim(&msg.message_id) {
                Claim::Theirs(mut rx) => {
                    // The relay holds one lease per message: the earlier delivery's has ended.
                    self.leases.lost(&msg.message_id);
                    self.state.deduplicated.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(message_id = %msg.message_id, "Redelivered while in progress; waiting for that work");
                    let theirs = loop {
                        if let Some(f) = rx.borrow().clone() {
                            break f;
                        }
                        if rx.changed().await.is_err() {
                            break Finished {
                                decision: Decision::Nack {
                                    retry: true,
                                    reason: "earlier work on this message stopped".into(),
                                    delay_ms: None,
                                },
                                report: None,
                                lease_lost: false,
                            };
                        }
                    };
                    if !theirs.lease_lost {
                        return (theirs.decision, theirs.report);
                    }
                }
                Claim::Mine(tx) => {
                    let lease = self.leases.start(&msg.message_id);
                    let (d, report) = tokio::select! {
                        d = self.run(msg, &lease, started) => d,
                        // `keep` never returns.
                        () = lease::keep(msg, acks, &lease) => (Decision::Nack { retry: true, reason: LEASE_LOST.into(), delay_ms: None }, None),
                    };
                    self.leases.finish(&msg.message_id);
                    // Removed before the result is published, so a waiter that must do the work
                    // itself can claim it.
                    self.lock_in_progress().remove(&msg.message_id);
                    tx.send_replace(Some(Finished {
                        decision: d.clone(),
                        report: report.clone(),
                        lease_lost: lease.is_cancelled() && !matches!(d, Decision::Ack),
                    }));
                    return (d, report);
                }
            }
        }
    }

    async fn run(
        &self,
        msg: &WebhookMessage,
        lease: &Lease,
        started: Instant,
    ) -> (Decision, Option<DeliveryReport>) {
        if let Some(pipeline) = &self.pipeline {
            return (self.run_modules(pipeline, msg, lease, started).await, None);
        }
        let channel = &self.channel;
        let Some(target) = channel.target_for(&msg.webhook_id) else {
            tracing::warn!(message_id = %msg.message_id, webhook_id = %msg.webhook_id, "No target for webhook id");
            let reason = format!("no target for webhook id {}", msg.webhook_id);
            return (
                Decision::Nack {
                    retry: false,
                    reason: reason.clone(),
                    delay_ms: None,
                },
                Some(DeliveryReport::failed(reason)),
            );
        };
        let label = if channel.targets.contains_key(&msg.webhook_id) {
            msg.webhook_id.as_str()
        } else {
            "default"
        };
        let delivery = forward::deliver(
            &self.client,
            msg,
            target,
            &channel.channel,
            &self.permits,
            &self.work_cancel,
            lease,
        )
        .await;
        self.state
            .target_attempts
            .fetch_add(u64::from(delivery.attempts), Ordering::Relaxed);
        self.state.delivery_done(
            label,
            started.elapsed().as_secs_f64(),
            &delivery.error_kinds,
        );
        match &delivery.decision {
            Decision::Ack => {
                self.record.record(&msg.message_id);
                tracing::debug!(message_id = %msg.message_id, attempts = delivery.attempts, "Delivered");
            }
            Decision::Nack { retry, reason, .. } => {
                tracing::warn!(message_id = %msg.message_id, retry, reason = %reason, attempts = delivery.attempts, "Delivery failed");
            }
        }
        (delivery.decision, delivery.report)
    }

    /// Module mode (§7.2): the entry's module or chain; shutdown past the drain timeout stops
    /// the run with a nack `retry:true`.
    async fn run_modules(
        &self,
        pipeline: &Pipeline,
        msg: &WebhookMessage,
        lease: &Lease,
        started: Instant,
    ) -> Decision {
        let delivered = tokio::select! {
            d = pipeline.deliver(msg, &self.channel.channel, &self.permits, lease) => d,
            () = self.work_cancel.cancelled() => {
                return Decision::Nack { retry: true, reason: "connector shutting down".into(), delay_ms: None };
            }
        };
        let label = delivered.entry.as_deref().unwrap_or("none");
        self.state
            .delivery_done(label, started.elapsed().as_secs_f64(), &delivered.errors);
        match &delivered.decision {
            Decision::Ack => {
                self.record.record(&msg.message_id);
                tracing::debug!(message_id = %msg.message_id, entry = label, "Delivered to modules");
            }
            Decision::Nack { retry, reason, .. } => {
                tracing::warn!(message_id = %msg.message_id, entry = label, retry, reason = %reason, "Module delivery failed");
            }
        }
        delivered.decision
    }
}
