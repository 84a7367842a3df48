//! One built module instance and its setup lifecycle (`docs/reference/module-contract.md` §2.2): `setup` runs at
//! start-up; a `Permanent` result stops the connector (exit 2); a `Transient` or `Unavailable`
//! result marks the instance unavailable (health failing) and `setup` is retried with backoff
//! (1 s doubling to 60 s) while its messages fail with the same kind.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use webhook_connect_protocol::backoff::Backoff;

use crate::health::ModuleStatus;
use crate::output::{Delivery, ErrorCategory, Output, OutputError};

/// First delay between setup attempts.
pub const SETUP_RETRY_INITIAL: Duration = Duration::from_secs(1);
/// Longest delay between setup attempts.
pub const SETUP_RETRY_MAX: Duration = Duration::from_secs(60);
/// Bound of one `setup` call; a module that hangs longer counts as `Transient` `timeout`.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(60);

/// A module instance shared by every message of its webhook entry or chain item.
pub struct Instance {
    /// `orders` or `orders.chain[1]`: the entry path without the file name.
    pub label: String,
    /// Canonical module name.
    pub module: &'static str,
    output: Box<dyn Output>,
    /// Health and counters, also shown on `/readyz` and `/metrics`.
    pub status: Arc<ModuleStatus>,
    /// The last setup error while the instance is unavailable.
    failed: std::sync::Mutex<Option<OutputError>>,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("label", &self.label)
            .field("module", &self.module)
            .finish_non_exhaustive()
    }
}

impl Instance {
    /// Wraps a built module. It counts as unavailable until its first `setup` succeeded.
    pub fn new(label: String, module: &'static str, output: Box<dyn Output>) -> Self {
        let status = Arc::new(ModuleStatus::new(&label, module));
        Instance {
            label,
            module,
            output,
            status,
            failed: std::sync::Mutex::new(Some(OutputError::unavailable(
                ErrorCategory::Other,
                "module setup has not run yet",
            ))),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<OutputError>> {
        self.failed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The setup error while the instance is unavailable.
    pub fn unavailable(&self) -> Option<OutputError> {
        self.lock().clone()
    }

    /// Runs `setup` once (bounded by [`SETUP_TIMEOUT`]) and records the result.
    pub async fn setup_once(&self) -> Result<(), OutputError> {
        let result = match tokio::time::timeout(SETUP_TIMEOUT, self.output.setup()).await {
            Ok(r) => r,
            Err(_) => Err(OutputError::transient(
                ErrorCategory::Timeout,
                format!("setup did not finish within {} s", SETUP_TIMEOUT.as_secs()),
            )),
        };
        match &result {
            Ok(()) => {
                *self.lock() = None;
                self.status.set_up(None);
                tracing::info!(instance = %self.label, module = self.module, "Module ready");
            }
            Err(e) => {
                *self.lock() = Some(e.clone());
                self.status.set_up(Some(e.to_string()));
                tracing::warn!(instance = %self.label, module = self.module, error = %e, kind = ?e.kind, "Module setup failed");
            }
        }
        result
    }

    /// Retries `setup` with backoff until it succeeds or `stop` is cancelled.
    pub async fn retry_setup(self: Arc<Self>, stop: CancellationToken) {
        let mut backoff = Backoff::new(SETUP_RETRY_INITIAL, SETUP_RETRY_MAX, 2.0);
        loop {
            tokio::select! {
                () = tokio::time::sleep(backoff.next_delay()) => {}
                () = stop.cancelled() => return,
            }
            let attempt = tokio::select! {
                r = self.setup_once() => r,
                () = stop.cancelled() => return,
            };
            if attempt.is_ok() {
                return;
            }
        }
    }

    /// Delivers one message: fails at once with the setup error while unavailable.
    pub async fn process(&self, delivery: &Delivery) -> Result<(), OutputError> {
        if let Some(e) = self.unavailable() {
            self.status.call_done(Err(&e));
            return Err(e);
        }
        let result = self.output.process(delivery).await;
        self.status.call_done(result.as_ref().map(|_| ()));
        result
    }

    /// Flushes and releases the module.
    pub async fn teardown(&self) {
        self.output.teardown().await;
    }
}
