//! Starting and stopping the connector: clients, per-channel dispatchers and stream loops, the
//! health listener, the `exit_on_stale_seconds` watchdog, and the drain on shutdown
//!

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::completion::CompletionRecord;
use crate::config::{ConnectorConfig, Problems};
use crate::dispatch::Dispatcher;
use crate::health::{self, ChannelState, States};
use crate::outbound::PolicyResolver;
use crate::output::shared::SharedClients;
use crate::pipeline::Pipeline;
use crate::stream::{self, Shared};

/// How the connector stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    /// Graceful shutdown (exit status 0).
    Shutdown,
    /// A channel was stale or disconnected for `exit_on_stale_seconds` (exit status 3).
    StaleExit,
}

impl RunOutcome {
    /// The process exit status for this outcome (`docs/reference/config-formats.md` §4.6).
    pub fn exit_code(self) -> i32 {
        match self {
            RunOutcome::Shutdown => 0,
            RunOutcome::StaleExit => 3,
        }
    }
}

/// The connector could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// TLS settings unusable (bad CA or client certificate).
    #[error("{0}")]
    Tls(String),
    /// HTTP client could not be built (for example an invalid proxy URL).
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    /// The completion record file cannot be used.
    #[error("{0}")]
    Completion(String),
    /// A module's `setup` failed permanently (`docs/reference/module-contract.md` §2.2), or module mode could not be
    /// built.
    #[error("{0}")]
    Modules(String),
    /// The health listener could not bind.
    #[error("health_listen: cannot listen on {addr}: {error}")]
    Health {
        /// The address.
        addr: SocketAddr,
        /// The bind error.
        error: std::io::Error,
    },
}

impl RunError {
    /// Start-up errors are configuration errors: exit status 2.
    pub fn exit_code(&self) -> i32 {
        2
    }
}

/// A running connector.
#[derive(Debug)]
pub struct ConnectorHandle {
    /// Where the health listener listens, when `health_listen` is set.
    pub health_addr: Option<SocketAddr>,
    /// Health and metrics of every channel, in configuration order.
    pub states: States,
    task: JoinHandle<RunOutcome>,
}

impl ConnectorHandle {
    /// Waits until the connector stopped (after `shutdown` was cancelled and the drain ended,
    /// or after the stale watchdog fired).
    pub async fn wait(self) -> RunOutcome {
        self.task.await.unwrap_or(RunOutcome::Shutdown)
    }
}

/// The client the connector forwards to its HTTP targets with (TLS and outbound policy of
/// `config`, never a proxy); the bench's bare-hop row uses it to measure the hop without the relay.
pub fn target_http_client(config: &ConnectorConfig) -> Result<reqwest::Client, RunError> {
    let tls = crate::tls::client_config(&config.tls).map_err(RunError::Tls)?;
    http_client(config, &tls, true)
}

/// A client for the relay, or (`targets`) for local targets. Only the relay client uses a
/// proxy (`proxy`, else the standard proxy variables, minus `no_proxy`); local targets are
/// always reached directly, whatever `HTTP_PROXY` says, and every new connection of theirs
/// passes the outbound policy.
fn http_client(
    config: &ConnectorConfig,
    tls: &Arc<rustls::ClientConfig>,
    targets: bool,
) -> Result<reqwest::Client, RunError> {
    let mut b = reqwest::Client::builder()
        .use_preconfigured_tls((**tls).clone())
        .connect_timeout(config.connection_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(60));
    if targets {
        b = b
            .no_proxy()
            .dns_resolver(PolicyResolver::new(config.outbound_strict, &[]));
    } else if let Some(proxy) = &config.proxy {
        let mut p = reqwest::Proxy::all(proxy).map_err(|e| RunError::Client(e.to_string()))?;
        if !config.no_proxy.is_empty() {
            p = p.no_proxy(reqwest::NoProxy::from_string(&config.no_proxy.join(",")));
        }
        b = b.proxy(p);
    }
    b.build().map_err(|e| RunError::Client(e.to_string()))
}

/// Starts the connector. Cancelling `shutdown` drains every channel (in-flight messages finish
/// within `drain_timeout` and are acked), closes the streams with 1000 and ends the task.
pub async fn start(
    config: ConnectorConfig,
    shutdown: CancellationToken,
) -> Result<ConnectorHandle, RunError> {
    let config = Arc::new(config);
    let tls = crate::tls::client_config(&config.tls).map_err(RunError::Tls)?;
    let relay_client = http_client(&config, &tls, false)?;
    // Targets get the same TLS settings (`docs/reference/module-contract.md` §7.1) but never the
    // proxy, which is for the relay connection. A separate client keeps the pools apart.
    let target_client = http_client(&config, &tls, true)?;
    let shared = Arc::new(Shared {
        config: config.clone(),
        relay_client,
        tls,
    });
    let states: States = Arc::new(
        config
            .channels
            .iter()
            .map(|c| Arc::new(ChannelState::new(&c.channel)))
            .collect(),
    );
    // Internal stop: the caller's shutdown, or the stale watchdog.
    let stop = CancellationToken::new();
    let tracker = TaskTracker::new();
    let pipelines = start_pipelines(&config, &states, &stop, &tracker).await?;
    let stale_fired = Arc::new(AtomicBool::new(false));
    let listener_stop = CancellationToken::new();
    let health_addr = match config.health_listen {
        Some(addr) => {
            let (local, _handle) = health::serve(addr, states.clone(), listener_stop.clone())
                .await
                .map_err(|error| RunError::Health { addr, error })?;
            tracing::info!(addr = %local, "Health listener started");
            Some(local)
        }
        None => None,
    };
    for ((channel, state), pipeline) in config.channels.iter().zip(states.iter()).zip(&pipelines) {
        let channel = Arc::new(channel.clone());
        let record = Arc::new(
            CompletionRecord::open(&config.completion_record, &channel.channel)
                .map_err(RunError::Completion)?,
        );
        let dispatcher = Arc::new(match pipeline {
            Some(pipeline) => {
                Dispatcher::with_pipeline(channel.clone(), pipeline.clone(), record, state.clone())
            }
            None => Dispatcher::new(
                channel.clone(),
                target_client.clone(),
                record,
                state.clone(),
            ),
        });
        tracker.spawn(stream::run_channel(
            shared.clone(),
            channel,
            dispatcher,
            state.clone(),
            stop.clone(),
        ));
    }
    tracker.close();
    if let Some(limit) = config.exit_on_stale {
        let states = states.clone();
        let stop = stop.clone();
        let fired = stale_fired.clone();
        // One watchdog per process.
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250).min(limit));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = stop.cancelled() => return,
                }
                if let Some(s) = states
                    .iter()
                    .find(|s| s.unhealthy_for().is_some_and(|d| d >= limit))
                {
                    tracing::error!(channel = %s.channel, limit_s = limit.as_secs_f64(), "Channel stale or disconnected too long; exiting");
                    fired.store(true, Ordering::SeqCst);
                    stop.cancel();
                    return;
                }
            }
        });
    }
    // One shutdown watcher per process.
    let task = tokio::spawn(async move {
        tokio::select! {
            () = shutdown.cancelled() => {
                tracing::info!("Shutting down: draining in-flight messages");
                stop.cancel();
            }
            () = stop.cancelled() => {}
        }
        tracker.wait().await;
        for pipeline in pipelines.iter().flatten() {
            pipeline.teardown().await;
        }
        listener_stop.cancel();
        if stale_fired.load(Ordering::SeqCst) {
            RunOutcome::StaleExit
        } else {
            RunOutcome::Shutdown
        }
    });
    Ok(ConnectorHandle {
        health_addr,
        states,
        task,
    })
}

/// Builds the module pipeline of every module-mode channel and runs the first `setup` of each
/// instance (`docs/reference/module-contract.md` §2.2). A permanent setup failure stops the start (exit 2); other
/// failures leave the instance unavailable and retry its setup in the background on `tracker`.
async fn start_pipelines(
    config: &ConnectorConfig,
    states: &States,
    stop: &CancellationToken,
    tracker: &TaskTracker,
) -> Result<Vec<Option<Arc<Pipeline>>>, RunError> {
    let shared = SharedClients::new();
    let mut pipelines = Vec::with_capacity(config.channels.len());
    for (channel, state) in config.channels.iter().zip(states.iter()) {
        let Some(modules) = &channel.modules else {
            pipelines.push(None);
            continue;
        };
        let mut problems = Problems::default();
        let Some(pipeline) = Pipeline::build(
            modules,
            shared.clone(),
            config.completion_record.capacity,
            config.completion_record.ttl,
            &mut problems,
        ) else {
            return Err(RunError::Modules(problems.errors.join("\n")));
        };
        let pipeline = Arc::new(pipeline);
        state.attach_modules(pipeline.statuses());
        if let Err(e) = pipeline.setup(stop, tracker).await {
            stop.cancel();
            for p in pipelines.iter().flatten().chain([&pipeline]) {
                p.teardown().await;
            }
            return Err(RunError::Modules(e.to_string()));
        }
        pipelines.push(Some(pipeline));
    }
    Ok(pipelines)
}

/// Runs the connector until `shutdown` is cancelled (exit 0) or the stale watchdog fires (exit 3).
pub async fn run(
    config: ConnectorConfig,
    shutdown: CancellationToken,
) -> Result<RunOutcome, RunError> {
    Ok(start(config, shutdown).await?.wait().await)
}
