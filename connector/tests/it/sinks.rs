//! Fixtures for the network output-module tests (`docs/reference/module-contract.md` §9): module settings built the way
//! the loader builds them, deliveries, unique names, and the server addresses from the
//! `TEST_*` variables with loopback defaults. A test whose server is down fails with a message
//! naming the variable; it never passes without its server.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};
use webhook_connector::config::Problems;
use webhook_connector::output::shared::SharedClients;
use webhook_connector::output::{Delivery, ModuleSettings, Output};

/// A module builder (`<module>::build`).
pub type Build = fn(&ModuleSettings<'_>, &mut Problems) -> Option<Box<dyn Output>>;

/// The value of `var`, or `default` when unset or empty.
pub fn env_or(var: &str, default: &str) -> String {
    std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// Fails the test unless `addr` (`host:port`) accepts TCP connections.
pub async fn require_server(var: &str, addr: &str) {
    let up =
        tokio::time::timeout(Duration::from_secs(3), tokio::net::TcpStream::connect(addr)).await;
    assert!(
        matches!(up, Ok(Ok(_))),
        "server for {var} is not reachable at {addr}: start it with scripts/services.sh or set {var}"
    );
}

/// A name unique to this test run: `<prefix>_<12 hex>`.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff)
}

/// A JSON object from a `json!` value.
pub fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

/// What one webhook entry (or chain item) gives a module.
pub struct Entry {
    pub module: &'static str,
    pub module_config: Map<String, Value>,
    pub connection: Option<(String, Map<String, Value>)>,
    pub webhook: Map<String, Value>,
    pub shared: Arc<SharedClients>,
}

impl Entry {
    pub fn new(module: &'static str, module_config: Value) -> Self {
        Entry {
            module,
            module_config: obj(module_config),
            connection: None,
            webhook: Map::new(),
            shared: SharedClients::new(),
        }
    }

    pub fn connection(mut self, name: &str, entry: Value) -> Self {
        self.connection = Some((name.to_owned(), obj(entry)));
        self
    }

    pub fn webhook(mut self, webhook: Value) -> Self {
        self.webhook = obj(webhook);
        self
    }

    pub fn shared(mut self, shared: &Arc<SharedClients>) -> Self {
        self.shared = shared.clone();
        self
    }

    pub fn settings(&self) -> ModuleSettings<'_> {
        ModuleSettings {
            module: self.module,
            path: "webhooks.json: test".to_owned(),
            module_config: &self.module_config,
            connection_name: self.connection.as_ref().map(|(n, _)| n.as_str()),
            connection: self.connection.as_ref().map(|(_, m)| m),
            webhook: &self.webhook,
            shared: self.shared.clone(),
            outbound_strict: false,
        }
    }

    /// Builds the module, failing the test on any load error.
    pub fn build(&self, build: Build) -> Box<dyn Output> {
        let mut problems = Problems::default();
        let out = build(&self.settings(), &mut problems);
        assert!(problems.errors.is_empty(), "load errors: {problems:?}");
        out.expect("built")
    }

    /// The load problems of a configuration that must not build.
    pub fn refused(&self, build: Build) -> Problems {
        let mut problems = Problems::default();
        let out = build(&self.settings(), &mut problems);
        assert!(out.is_none(), "built, with problems {problems:?}");
        assert!(!problems.errors.is_empty());
        problems
    }
}

/// A delivery of `payload` with id `message_id`.
pub fn delivery(message_id: &str, payload: Value) -> Delivery {
    Delivery {
        message_id: message_id.to_owned(),
        webhook_id: "orders".to_owned(),
        channel: "test-channel".to_owned(),
        sequence: 1,
        delivery_count: 1,
        received_at: Some("2026-01-02T03:04:05.123456Z".to_owned()),
        headers: BTreeMap::from([
            ("content-type".to_owned(), "application/json".to_owned()),
            ("x-event".to_owned(), "order.created".to_owned()),
        ]),
        body: Arc::from(payload.to_string().into_bytes()),
        payload,
        content_type: Some("application/json".to_owned()),
        data_type: "json".to_owned(),
    }
}

/// A sample payload.
pub fn payload(n: u64) -> Value {
    json!({"order": n, "items": ["a", "b"], "note": "snow ☃"})
}

/// A loopback port nothing listens on.
pub async fn closed_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    port
}

type CleanupFn =
    Box<dyn FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send>;

/// Runs an async clean-up (drop a table, delete a queue) when dropped, also when the test
/// panics. It runs on its own thread and runtime, since `Drop` cannot await.
pub struct Cleanup(Option<CleanupFn>);

impl Cleanup {
    pub fn new<F, Fut>(f: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        Cleanup(Some(Box::new(move || Box::pin(f()))))
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            let _ = std::thread::spawn(move || {
                if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    rt.block_on(async {
                        let _ = tokio::time::timeout(Duration::from_secs(10), f()).await;
                    });
                }
            })
            .join();
        }
    }
}
