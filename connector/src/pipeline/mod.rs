//! Module mode (`docs/reference/module-contract.md` §1, §2.2, §5, §6, §7.2): the instances of a channel's
//! `webhooks.json` entries, built once at start-up, their setup lifecycle, and the run of one
//! message through its entry's module or chain up to the ack/nack decision.
//!
//! - [`instance`]: one module instance and its setup retries;
//! - [`chain`]: sequential and parallel execution, timeouts, cancellation;
//! - [`retry`]: the retry policy; [`partial`]: partial completion of chains;
//! - [`decision`]: outcome → ack/nack.

pub(crate) mod chain;
pub mod config;
pub(crate) mod decision;
pub(crate) mod instance;
pub(crate) mod partial;
pub(crate) mod retry;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use webhook_connect_protocol::WebhookMessage;

use self::config::{ChainSettings, ModuleModeConfig};
use crate::ack::Decision;
use crate::health::ModuleStatus;
use crate::lease::Lease;
use crate::output::shared::SharedClients;
use crate::output::{Delivery, ErrorKind, ModuleSettings, Output, registry};
use crate::settings::Problems;

use self::chain::{ItemResult, RunContext};
use self::instance::Instance;
use self::partial::PartialRecord;
use self::retry::ModuleRetry;

/// Builds one module instance (normally [`registry::build`]).
pub type ModuleBuilder<'b> =
    dyn FnMut(&ModuleSettings<'_>, &mut Problems) -> Option<Box<dyn Output>> + 'b;

/// One module instance in an entry, with what the run needs.
#[derive(Debug)]
pub struct RouteItem {
    /// Position in the chain (0 for a single module).
    pub index: usize,
    /// The shared instance.
    pub instance: Arc<Instance>,
    /// Its retry policy.
    pub retry: ModuleRetry,
    /// Configuration fingerprint (partial completion).
    pub fingerprint: u64,
}

/// A webhook entry ready to run.
#[derive(Debug)]
pub struct Route {
    /// Webhook id of the entry (`default` for the fallback).
    pub id: String,
    /// `data_type: "blob"`.
    pub blob: bool,
    /// Chain settings; `None` for a single module.
    pub chain: Option<ChainSettings>,
    /// Items in order.
    pub items: Vec<RouteItem>,
}

/// A module's setup failed permanently: the connector must not start (exit 2).
#[derive(Debug, Clone, thiserror::Error)]
#[error("module setup failed permanently: {instance} ({module}): {message}")]
pub struct SetupError {
    /// The instance label.
    pub instance: String,
    /// The module.
    pub module: &'static str,
    /// The error text.
    pub message: String,
}

/// What [`Pipeline::deliver`] did, for the dispatcher's metrics and logs.
#[derive(Debug)]
pub struct Delivered {
    /// Ack or nack.
    pub decision: Decision,
    /// The entry used (`None` when there was none).
    pub entry: Option<String>,
    /// One error category per failed item.
    pub errors: Vec<&'static str>,
}

/// The module pipeline of one channel.
#[derive(Debug)]
pub struct Pipeline {
    routes: HashMap<String, Route>,
    instances: Vec<Arc<Instance>>,
    partial: PartialRecord,
}

impl Pipeline {
    /// Builds every instance of `config` (no I/O: that is `setup`'s job). Problems are recorded
    /// with their paths; `None` when any instance could not be built. `partial_capacity` and
    /// `partial_ttl` bound the partial-completion record.
    pub fn build(
        config: &ModuleModeConfig,
        shared: Arc<SharedClients>,
        partial_capacity: usize,
        partial_ttl: Duration,
        problems: &mut Problems,
    ) -> Option<Self> {
        Self::build_with(
            config,
            shared,
            partial_capacity,
            partial_ttl,
            problems,
            &mut registry::build,
        )
    }

    /// [`Self::build`] with another module builder (tests inject probe modules this way).
    pub fn build_with(
        config: &ModuleModeConfig,
        shared: Arc<SharedClients>,
        partial_capacity: usize,
        partial_ttl: Duration,
        problems: &mut Problems,
        builder: &mut ModuleBuilder<'_>,
    ) -> Option<Self> {
        let mut routes = HashMap::new();
        let mut instances = Vec::new();
        let mut ok = true;
        for (id, entry) in &config.entries {
            let mut items = Vec::with_capacity(entry.items.len());
            for item in &entry.items {
                let settings = ModuleSettings {
                    module: item.module,
                    path: item.path.clone(),
                    module_config: &item.module_config,
                    connection_name: item.connection_name.as_deref(),
                    connection: item.connection.as_ref(),
                    webhook: &item.webhook,
                    shared: shared.clone(),
                    outbound_strict: config.outbound_strict,
                };
                let Some(output) = builder(&settings, problems) else {
                    ok = false;
                    continue;
                };
                let label = item
                    .path
                    .split_once(": ")
                    .map_or(item.path.as_str(), |(_, rest)| rest)
                    .to_owned();
                let instance = Arc::new(Instance::new(label, item.module, output));
                instances.push(instance.clone());
                items.push(RouteItem {
                    index: item.index,
                    instance,
                    retry: item.retry.clone(),
                    fingerprint: item.fingerprint,
                });
            }
            routes.insert(
                id.clone(),
                Route {
                    id: id.clone(),
                    blob: entry.blob,
                    chain: entry.chain.clone(),
                    items,
                },
            );
        }
        ok.then(|| Pipeline {
            routes,
            instances,
            partial: PartialRecord::new(partial_capacity, partial_ttl),
        })
    }

    /// Health and counters of every instance.
    pub fn statuses(&self) -> Vec<Arc<ModuleStatus>> {
        self.instances.iter().map(|i| i.status.clone()).collect()
    }

    /// The instances, in configuration order.
    pub fn instances(&self) -> &[Arc<Instance>] {
        &self.instances
    }

    /// The partial-completion record.
    pub fn partial(&self) -> &PartialRecord {
        &self.partial
    }

    /// Runs every instance's `setup` once, concurrently (§2.2). A `Permanent` failure is
    /// returned (the connector exits 2); instances that failed otherwise are retried in the
    /// background on `tracker` until they succeed or `stop` is cancelled.
    pub async fn setup(
        &self,
        stop: &CancellationToken,
        tracker: &TaskTracker,
    ) -> Result<(), SetupError> {
        let results =
            futures_util::future::join_all(self.instances.iter().map(|i| i.setup_once())).await;
        let mut permanent = None;
        for (instance, result) in self.instances.iter().zip(results) {
            match result {
                Ok(()) => {}
                Err(e) if e.kind == ErrorKind::Permanent => {
                    permanent.get_or_insert(SetupError {
                        instance: instance.label.clone(),
                        module: instance.module,
                        message: e.message,
                    });
                }
                Err(_) => {
                    // One retry task per output instance whose setup failed.
                    tracker.spawn(instance.clone().retry_setup(stop.clone()));
                }
            }
        }
        match permanent {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Delivers `msg` (received on `channel`) through its entry and decides ack or nack. Each
    /// `process` call takes one of `permits`; no retry starts once `lease` is lost.
    pub async fn deliver(
        &self,
        msg: &WebhookMessage,
        channel: &str,
        permits: &Semaphore,
        lease: &Lease,
    ) -> Delivered {
        let Some(route) = self
            .routes
            .get(&msg.webhook_id)
            .or_else(|| self.routes.get("default"))
        else {
            return Delivered {
                decision: Decision::Nack {
                    retry: false,
                    reason: format!(
                        "no webhook entry for webhook id {} and no default entry",
                        msg.webhook_id
                    ),
                    delay_ms: None,
                },
                entry: None,
                errors: Vec::new(),
            };
        };
        let mut delivery = Delivery::from_message(msg, channel);
        if route.blob {
            delivery.payload = Value::String(String::from_utf8_lossy(&delivery.body).into_owned());
            delivery.data_type = "blob".into();
        }
        let ctx = RunContext {
            permits,
            partial: &self.partial,
            lease,
        };
        let results = chain::run(route, &delivery, &ctx).await;
        let errors = results
            .iter()
            .filter_map(|r| match r {
                ItemResult::Failed(e) => Some(e.category.as_str()),
                ItemResult::TimedOut => Some("timeout"),
                _ => None,
            })
            .collect();
        let outcome = decision::outcome(route, &results);
        if outcome == decision::Outcome::Success {
            self.partial.forget(&msg.message_id);
        }
        Delivered {
            decision: decision::decide(outcome),
            entry: Some(route.id.clone()),
            errors,
        }
    }

    /// Tears every instance down (at shutdown, after the drain).
    pub async fn teardown(&self) {
        futures_util::future::join_all(self.instances.iter().map(|i| i.teardown())).await;
    }
}
