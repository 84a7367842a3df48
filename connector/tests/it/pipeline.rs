//! The module pipeline with probe modules (`docs/reference/module-contract.md` §2.2, §5, §6, §7.2): chains in both
//! modes, timeouts, cancellation, partial completion, retries, setup failures and the ack/nack
//! decision.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use webhook_connect_protocol::WebhookMessage;
use webhook_connector::ack::Decision;
use webhook_connector::config::Problems;
use webhook_connector::output::shared::SharedClients;
use webhook_connector::output::{
    Delivery, ErrorCategory, ErrorKind, ModuleSettings, Output, OutputError,
};
use webhook_connector::pipeline::Pipeline;
use webhook_connector::pipeline::config::{self as modules, ModuleModeConfig};

/// What a probe does on each `process` call.
#[derive(Debug, Clone, Copy)]
enum Act {
    Ok,
    Fail(ErrorKind),
    /// Sleep this long, then succeed.
    Slow(Duration),
    /// Never finish.
    Hang,
}

/// A scripted module: `script` is consumed call by call, `then` afterwards.
#[derive(Debug)]
struct Probe {
    script: Mutex<Vec<Act>>,
    then: Act,
    setup: Mutex<Vec<Result<(), OutputError>>>,
    calls: AtomicUsize,
    completed: AtomicUsize,
    setups: AtomicUsize,
}

impl Probe {
    fn new(then: Act) -> Arc<Self> {
        Self::scripted(Vec::new(), then)
    }

    fn scripted(script: Vec<Act>, then: Act) -> Arc<Self> {
        Arc::new(Probe {
            script: Mutex::new(script.into_iter().rev().collect()),
            then,
            setup: Mutex::new(Vec::new()),
            calls: AtomicUsize::new(0),
            completed: AtomicUsize::new(0),
            setups: AtomicUsize::new(0),
        })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn completed(&self) -> usize {
        self.completed.load(Ordering::SeqCst)
    }
}

struct ProbeOutput(Arc<Probe>);

#[async_trait::async_trait]
impl Output for ProbeOutput {
    async fn setup(&self) -> Result<(), OutputError> {
        self.0.setups.fetch_add(1, Ordering::SeqCst);
        self.0.setup.lock().unwrap().pop().unwrap_or(Ok(()))
    }

    async fn process(&self, _delivery: &Delivery) -> Result<(), OutputError> {
        self.0.calls.fetch_add(1, Ordering::SeqCst);
        let act = self.0.script.lock().unwrap().pop().unwrap_or(self.0.then);
        match act {
            Act::Ok => {}
            Act::Fail(kind) => {
                return Err(OutputError::new(kind, ErrorCategory::Other, "probe failed"));
            }
            Act::Slow(d) => tokio::time::sleep(d).await,
            Act::Hang => std::future::pending::<()>().await,
        }
        self.0.completed.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn teardown(&self) {}
}

fn load(dir: &Path, webhooks: serde_json::Value) -> ModuleModeConfig {
    let path = dir.join("webhooks.json");
    std::fs::write(&path, webhooks.to_string()).unwrap();
    let mut p = Problems::default();
    let config = modules::load(&path, None, false, &|_| None, &mut p);
    assert!(p.errors.is_empty(), "{p:?}");
    config.unwrap()
}

/// Builds the pipeline with `probes` keyed by instance label (`a`, `a.chain[1]`).
fn pipeline(config: &ModuleModeConfig, probes: &HashMap<&str, Arc<Probe>>) -> Pipeline {
    let mut p = Problems::default();
    let mut builder = |s: &ModuleSettings<'_>, _: &mut Problems| -> Option<Box<dyn Output>> {
        let label = s.path.split_once(": ").unwrap().1;
        let probe = probes
            .get(label)
            .unwrap_or_else(|| panic!("no probe for {label}"));
        Some(Box::new(ProbeOutput(probe.clone())))
    };
    let built = Pipeline::build_with(
        config,
        SharedClients::new(),
        100,
        Duration::from_secs(3600),
        &mut p,
        &mut builder,
    );
    assert!(p.errors.is_empty(), "{p:?}");
    built.unwrap()
}

async fn ready(pipeline: &Pipeline) {
    pipeline
        .setup(&CancellationToken::new(), &TaskTracker::new())
        .await
        .unwrap();
}

fn message(id: &str, webhook: &str) -> WebhookMessage {
    serde_json::from_value(json!({
        "message_id": id, "webhook_id": webhook, "sequence": 1,
        "headers": {"content-type": "application/json"}, "payload": {"n": 1}
    }))
    .unwrap()
}

async fn deliver(p: &Pipeline, id: &str, webhook: &str) -> Decision {
    p.deliver(
        &message(id, webhook),
        "orders",
        &Semaphore::new(10),
        &CancellationToken::new(),
    )
    .await
    .decision
}

fn chain(items: usize, chain_config: serde_json::Value) -> serde_json::Value {
    json!({"a": {"chain": vec!["log"; items], "chain-config": chain_config}})
}

fn is_nack(d: &Decision, want_retry: bool) -> bool {
    matches!(d, Decision::Nack { retry, .. } if *retry == want_retry)
}

#[tokio::test]
async fn sequential_chain_stops_at_the_first_failure_without_continue_on_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = load(dir.path(), chain(3, json!({"continue_on_error": false})));
    let probes = HashMap::from([
        ("a.chain[0]", Probe::new(Act::Ok)),
        ("a.chain[1]", Probe::new(Act::Fail(ErrorKind::Permanent))),
        ("a.chain[2]", Probe::new(Act::Ok)),
    ]);
    let p = pipeline(&config, &probes);
    ready(&p).await;
    let d = deliver(&p, "m1", "a").await;
    assert!(is_nack(&d, false), "permanent failure, rest skipped: {d:?}");
    assert_eq!(probes["a.chain[0]"].calls(), 1);
    assert_eq!(probes["a.chain[2]"].calls(), 0, "skipped after the failure");
}

#[tokio::test]
async fn sequential_chain_with_continue_on_error_runs_every_item() {
    let dir = tempfile::tempdir().unwrap();
    let config = load(dir.path(), chain(3, json!({})));
    let probes = HashMap::from([
        ("a.chain[0]", Probe::new(Act::Ok)),
        ("a.chain[1]", Probe::new(Act::Fail(ErrorKind::Transient))),
        ("a.chain[2]", Probe::new(Act::Ok)),
    ]);
    let p = pipeline(&config, &probes);
    ready(&p).await;
    let d = deliver(&p, "m1", "a").await;
    assert!(is_nack(&d, true), "{d:?}");
    assert_eq!(probes["a.chain[2]"].completed(), 1);
}

#[tokio::test(start_paused = true)]
async fn parallel_chain_cancels_running_items_on_failure_r105() {
    let dir = tempfile::tempdir().unwrap();
    let config = load(
        dir.path(),
        chain(
            3,
            json!({"execution": "parallel", "continue_on_error": false}),
        ),
    );
    let probes = HashMap::from([
        ("a.chain[0]", Probe::new(Act::Slow(Duration::from_secs(20)))),
        ("a.chain[1]", Probe::new(Act::Fail(ErrorKind::Permanent))),
        ("a.chain[2]", Probe::new(Act::Slow(Duration::from_secs(20)))),
    ]);
    let p = pipeline(&config, &probes);
    ready(&p).await;
    let d = deliver(&p, "m1", "a").await;
    assert!(
        is_nack(&d, false),
        "cancelled by a permanent failure: {d:?}"
    );
    for slow in ["a.chain[0]", "a.chain[2]"] {
        assert_eq!(
            probes[slow].completed(),
            0,
            "{slow} was cancelled, not completed"
        );
    }
    // Cancelled items did not succeed, so a redelivery runs them.
    let fp = config.entries["a"].items[0].fingerprint;
    assert!(!p.partial().succeeded("m1", 0, fp));
}

#[tokio::test(start_paused = true)]
async fn parallel_chain_waits_for_all_with_continue_on_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = load(dir.path(), chain(2, json!({"execution": "parallel"})));
    let probes = HashMap::from([
        ("a.chain[0]", Probe::new(Act::Slow(Duration::from_secs(5)))),
        ("a.chain[1]", Probe::new(Act::Fail(ErrorKind::Transient))),
    ]);
    let p = pipeline(&config, &probes);
    ready(&p).await;
    let d = deliver(&p, "m1", "a").await;
    assert!(is_nack(&d, true), "{d:?}");
    assert_eq!(probes["a.chain[0]"].completed(), 1);
}

#[tokio::test(start_paused = true)]
async fn sequential_chain_timeout_ends_a_hanging_item_as_retryable_r104() {
    let dir = tempfile::tempdir().unwrap();
    let config = load(dir.path(), chain(3, json!({"timeout": 2})));
    let probes = HashMap::from([
        ("a.chain[0]", Probe::new(Act::Ok)),
        ("a.chain[1]", Probe::new(Act::Hang)),
        ("a.chain[2]", Probe::new(Act::Ok)),
    ]);
    let p = pipeline(&config, &probes);
    ready(&p).await;
    let d = deliver(&p, "m1", "a").await;
    match &d {
        Decision::Nack {
            retry: true,
            reason,
            ..
        } => {
            assert!(reason.contains("timed out"), "{reason}")
        }
        other => panic!("expected a retryable nack, got {other:?}"),
    }
    assert_eq!(
        probes["a.chain[2]"].calls(),
        0,
        "not started after the timeout"
    );
}

#[tokio::test(start_paused = true)]
async fn parallel_chain_timeout_cancels_running_items() {
    let dir = tempfile::tempdir().unwrap();
    let config = load(
        dir.path(),
        chain(2, json!({"execution": "parallel", "timeout": 1})),
    );
    let probes = HashMap::from([
        ("a.chain[0]", Probe::new(Act::Ok)),
        ("a.chain[1]", Probe::new(Act::Hang)),
    ]);
    let p = pipeline(&config, &probes);
    ready(&p).await;
    assert!(is_nack(&deliver(&p, "m1", "a").await, true));
}

#[tokio::test]
async fn a_redelivery_runs_only_the_failed_chain_item_r106() {
    let dir = tempfile::tempdir().unwrap();
    let config = load(dir.path(), chain(3, json!({})));
    let probes = HashMap::from([
        ("a.chain[0]", Probe::new(Act::Ok)),
        (
            "a.chain[1]",
            Probe::scripted(vec![Act::Fail(ErrorKind::Transient)], Act::Ok),
        ),
        ("a.chain[2]", Probe::new(Act::Ok)),
    ]);
    let p = pipeline(&config, &probes);
    ready(&p).await;
    assert!(is_nack(&deliver(&p, "m1", "a").await, true));
    assert_eq!(deliver(&p, "m1", "a").await, Decision::Ack);
    assert_eq!(probes["a.chain[0]"].calls(), 1, "item 1 ran once in total");
    assert_eq!(probes["a.chain[1]"].calls(), 2, "item 2 ran again");
    assert_eq!(probes["a.chain[2]"].calls(), 1, "item 3 ran once in total");
    // Another message runs every item.
    assert_eq!(deliver(&p, "m2", "a").await, Decision::Ack);
    assert_eq!(probes["a.chain[0]"].calls(), 2);
}

#[tokio::test]
async fn a_changed_item_configuration_runs_again_after_a_redelivery() {
    let dir = tempfile::tempdir().unwrap();
    let first = load(dir.path(), chain(2, json!({})));
    let second = load(
        dir.path(),
        json!({"a": {"chain": ["log", {"module": "log", "module-config": {"pretty_print": true}}]}}),
    );
    let probes = HashMap::from([
        ("a.chain[0]", Probe::new(Act::Ok)),
        ("a.chain[1]", Probe::new(Act::Ok)),
    ]);
    let old = pipeline(&first, &probes);
    let new = pipeline(&second, &probes);
    let item = |cfg: &ModuleModeConfig, i: usize| cfg.entries["a"].items[i].fingerprint;
    assert_eq!(item(&first, 0), item(&second, 0));
    assert_ne!(item(&first, 1), item(&second, 1));
    drop((old, new));
}

#[tokio::test(start_paused = true)]
async fn transient_errors_are_retried_locally_up_to_max_attempts_r102() {
    let dir = tempfile::tempdir().unwrap();
    let config = load(
        dir.path(),
        json!({"a": {"module": "log", "retry": {"enabled": true, "max_attempts": 4, "initial_delay": 1}}}),
    );
    let probes = HashMap::from([("a", Probe::new(Act::Fail(ErrorKind::Transient)))]);
    let p = pipeline(&config, &probes);
    ready(&p).await;
    assert!(is_nack(&deliver(&p, "m1", "a").await, true), "R-83");
    assert_eq!(probes["a"].calls(), 4);
}

#[tokio::test]
async fn permanent_errors_are_not_retried_and_dead_letter_r83() {
    let dir = tempfile::tempdir().unwrap();
    let config = load(
        dir.path(),
        json!({"a": {"module": "log", "retry": {"enabled": true, "max_attempts": 4}}}),
    );
    let probes = HashMap::from([("a", Probe::new(Act::Fail(ErrorKind::Permanent)))]);
    let p = pipeline(&config, &probes);
    ready(&p).await;
    assert!(is_nack(&deliver(&p, "m1", "a").await, false));
    assert_eq!(probes["a"].calls(), 1);
}

#[tokio::test]
async fn unknown_webhook_uses_default_or_dead_letters_r83_r109() {
    let dir = tempfile::tempdir().unwrap();
    let without = load(dir.path(), json!({"a": {"module": "log"}}));
    let probes = HashMap::from([("a", Probe::new(Act::Ok)), ("default", Probe::new(Act::Ok))]);
    let p = pipeline(&without, &probes);
    ready(&p).await;
    assert!(is_nack(&deliver(&p, "m1", "other").await, false));
    let with = load(
        dir.path(),
        json!({"a": {"module": "log"}, "default": {"module": "log"}}),
    );
    let p = pipeline(&with, &probes);
    ready(&p).await;
    assert_eq!(deliver(&p, "m2", "other").await, Decision::Ack);
    assert_eq!(probes["default"].calls(), 1);
    assert_eq!(probes["a"].calls(), 0);
}

#[tokio::test]
async fn unavailable_failures_ask_for_a_requeue_delay() {
    let dir = tempfile::tempdir().unwrap();
    let config = load(dir.path(), json!({"a": {"module": "log"}}));
    let probes = HashMap::from([("a", Probe::new(Act::Fail(ErrorKind::Unavailable)))]);
    let p = pipeline(&config, &probes);
    ready(&p).await;
    match deliver(&p, "m1", "a").await {
        Decision::Nack {
            retry: true,
            delay_ms: Some(ms),
            ..
        } => assert!(ms > 0),
        other => panic!("expected a delayed retryable nack, got {other:?}"),
    }
}

#[tokio::test]
async fn permanent_setup_failure_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = load(dir.path(), json!({"a": {"module": "log"}}));
    let probe = Probe::new(Act::Ok);
    probe.setup.lock().unwrap().push(Err(OutputError::permanent(
        ErrorCategory::InvalidData,
        "bad table definition",
    )));
    let probes = HashMap::from([("a", probe)]);
    let p = pipeline(&config, &probes);
    let err = p
        .setup(&CancellationToken::new(), &TaskTracker::new())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("bad table definition"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn transient_setup_failure_marks_unavailable_then_retries_with_backoff() {
    let dir = tempfile::tempdir().unwrap();
    let config = load(dir.path(), json!({"a": {"module": "log"}}));
    let probe = Probe::new(Act::Ok);
    {
        let mut setup = probe.setup.lock().unwrap();
        // Popped from the end: fail twice, then succeed.
        setup.push(Ok(()));
        setup.push(Err(OutputError::transient(
            ErrorCategory::Connection,
            "down",
        )));
        setup.push(Err(OutputError::transient(
            ErrorCategory::Connection,
            "down",
        )));
    }
    let probes = HashMap::from([("a", probe.clone())]);
    let p = pipeline(&config, &probes);
    let stop = CancellationToken::new();
    let tracker = TaskTracker::new();
    p.setup(&stop, &tracker).await.unwrap();
    assert!(!p.statuses()[0].is_up(), "health shows the module failing");
    // Messages fail with the setup error's kind, without calling the module.
    assert!(is_nack(&deliver(&p, "m1", "a").await, true));
    assert_eq!(probe.calls(), 0);
    // Retries after 1 s (fails) and 2 s more (succeeds).
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(probe.setups.load(Ordering::SeqCst), 3);
    assert!(p.statuses()[0].is_up());
    assert_eq!(deliver(&p, "m2", "a").await, Decision::Ack);
    stop.cancel();
    tracker.close();
    tracker.wait().await;
}
