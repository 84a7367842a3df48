//! `gcp_pubsub` (feature `gcp_pubsub`, `docs/reference/module-contract.md` §3.11, §9).
//!
//! - Against Google's Pub/Sub emulator (`TEST_PUBSUB_EMULATOR_HOST`, default `127.0.0.1:8085`,
//!   started by `scripts/services.sh pubsub`): messages published through the module are read
//!   back with the emulator's REST API (a subscription, `:pull`), each test on its own topic and
//!   subscription, deleted at the end.
//! - The service-account token exchange cannot reach Google here, so it is tested against a
//!   token endpoint served by the test itself: a key pair is generated with `openssl` at test
//!   time (no key is committed), the endpoint verifies each RS256 assertion with the public key,
//!   and the test verifies it again with `openssl dgst`. The same in-process server stands in
//!   for the API where the emulator cannot produce an answer (bearer token checks, 401, 403,
//!   429, 503, and the emulator's own `INVALID_ARGUMENT` answer, replayed).

#![cfg(feature = "gcp_pubsub")]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Form, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use base64::Engine as _;
use serde_json::{Value, json};
use webhook_connector::output::shared::SharedClients;
use webhook_connector::output::{ErrorCategory, ErrorKind, gcp_pubsub};

use crate::sinks::{
    Cleanup, Entry, closed_port, delivery, env_or, payload, require_server, unique,
};

const PROJECT: &str = "wc-test-project";

/// `http://host:port` of the emulator, after checking that it answers.
async fn emulator() -> String {
    let host = env_or("TEST_PUBSUB_EMULATOR_HOST", "127.0.0.1:8085");
    require_server("TEST_PUBSUB_EMULATOR_HOST", &host).await;
    format!("http://{host}")
}

fn connection(endpoint: &str) -> Value {
    json!({"type": "gcp_pubsub", "project_id": PROJECT, "endpoint": endpoint})
}

/// A topic name of this test run, with characters that need encoding in a URL path.
fn topic_name() -> String {
    unique("wc-ps.a~b+c")
}

/// A topic (created by the module or the test) and a subscription on it, both deleted on drop.
struct Topic {
    endpoint: String,
    name: String,
    sub: String,
    _cleanup: Cleanup,
}

impl Topic {
    async fn new() -> Self {
        let endpoint = emulator().await;
        let name = topic_name();
        let sub = unique("wc-sub");
        let (e, t, s) = (endpoint.clone(), name.clone(), sub.clone());
        let cleanup = Cleanup::new(move || async move {
            let http = reqwest::Client::new();
            let base = format!("{e}/v1/projects/{PROJECT}");
            let _ = http
                .delete(format!("{base}/subscriptions/{s}"))
                .send()
                .await;
            let _ = http
                .delete(format!("{base}/topics/{}", encode(&t)))
                .send()
                .await;
        });
        Topic {
            endpoint,
            name,
            sub,
            _cleanup: cleanup,
        }
    }

    fn url(&self, rest: &str) -> String {
        format!("{}/v1/projects/{PROJECT}/{rest}", self.endpoint)
    }

    fn topic_url(&self) -> String {
        self.url(&format!("topics/{}", encode(&self.name)))
    }

    fn entry(&self, config: Value) -> Entry {
        let mut config = config;
        config["topic"] = json!(self.name);
        Entry::new("gcp_pubsub", config).connection("pubsub", connection(&self.endpoint))
    }

    async fn exists(&self) -> bool {
        let status = reqwest::get(self.topic_url()).await.unwrap().status();
        status.is_success()
    }

    /// Creates the subscription (with message ordering); the topic must exist.
    async fn subscribe(&self) {
        let r = reqwest::Client::new()
            .put(self.url(&format!("subscriptions/{}", self.sub)))
            .json(&json!({
                "topic": format!("projects/{PROJECT}/topics/{}", self.name),
                "enableMessageOrdering": true,
            }))
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "create subscription: {}",
            r.status()
        );
    }

    /// Pulls until `n` messages arrived (at most 10 s), acks them, returns their `message`s.
    async fn pull(&self, n: usize) -> Vec<Value> {
        let http = reqwest::Client::new();
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while out.len() < n && tokio::time::Instant::now() < deadline {
            let answer: Value = http
                .post(self.url(&format!("subscriptions/{}:pull", self.sub)))
                .json(&json!({"maxMessages": 100, "returnImmediately": true}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let received = answer["receivedMessages"].as_array().cloned();
            let received = received.unwrap_or_default();
            if received.is_empty() {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            let ack_ids: Vec<Value> = received.iter().map(|m| m["ackId"].clone()).collect();
            let _ = http
                .post(self.url(&format!("subscriptions/{}:acknowledge", self.sub)))
                .json(&json!({"ackIds": ack_ids}))
                .send()
                .await;
            out.extend(received.into_iter().map(|m| m["message"].clone()));
        }
        assert_eq!(out.len(), n, "messages pulled: {out:?}");
        out
    }
}

fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn decoded_data(message: &Value) -> Value {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(message["data"].as_str().unwrap())
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// Published through the module (which created the topic at setup) and read back: `data` is the
/// payload JSON, the attributes are `webhook_id`, `message_id` and the acceptable headers only,
/// the ordering key is rendered from its placeholders.
#[tokio::test]
async fn a_published_message_is_read_back_with_attributes_and_ordering_key() {
    let topic = Topic::new().await;
    let out = topic
        .entry(json!({"ordering_key": "{webhook_id}/{message_id}"}))
        .build(gcp_pubsub::build);
    assert!(!topic.exists().await);
    out.setup().await.unwrap();
    assert!(topic.exists().await, "create_topic (default) created it");
    topic.subscribe().await;

    let mut d = delivery("msg_ps_1", payload(1));
    d.headers.insert("x_ok-Name".into(), "kept".into());
    d.headers.insert("x.dotted".into(), "dropped: name".into());
    d.headers.insert("x-long".into(), "v".repeat(1025));
    d.headers.insert("x-limit".into(), "v".repeat(1024));
    d.headers
        .insert("goog-reserved".into(), "dropped: prefix".into());
    out.process(&d).await.unwrap();

    let messages = topic.pull(1).await;
    let m = &messages[0];
    assert_eq!(decoded_data(m), payload(1));
    assert_eq!(m["orderingKey"], "orders/msg_ps_1");
    let attributes = m["attributes"].as_object().unwrap();
    let mut names: Vec<&str> = attributes.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "content-type",
            "message_id",
            "webhook_id",
            "x-event",
            "x-limit",
            "x_ok-Name"
        ]
    );
    assert_eq!(attributes["webhook_id"], "orders");
    assert_eq!(attributes["message_id"], "msg_ps_1");
    assert_eq!(attributes["x-event"], "order.created");
    assert_eq!(attributes["x_ok-Name"], "kept");
    out.teardown().await;
}

/// At most 100 attributes, whatever the number of headers: `webhook_id`, `message_id` and the
/// first 98 headers in name order.
#[tokio::test]
async fn attributes_stop_at_one_hundred() {
    let topic = Topic::new().await;
    let out = topic.entry(json!({})).build(gcp_pubsub::build);
    out.setup().await.unwrap();
    topic.subscribe().await;
    let mut d = delivery("msg_many", payload(2));
    d.headers.clear();
    for i in 0..150 {
        d.headers.insert(format!("h{i:03}"), i.to_string());
    }
    out.process(&d).await.unwrap();
    let m = &topic.pull(1).await[0];
    let attributes = m["attributes"].as_object().unwrap();
    assert_eq!(attributes.len(), 100);
    assert!(attributes.contains_key("h097") && !attributes.contains_key("h098"));
}

/// `create_topic: false` on a missing topic: `Unavailable` at setup and per message (an
/// operator must create it), and nothing is created.
#[tokio::test]
async fn a_missing_topic_without_create_topic_is_unavailable() {
    let topic = Topic::new().await;
    let out = topic
        .entry(json!({"create_topic": false}))
        .build(gcp_pubsub::build);
    let err = out.setup().await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unavailable, "{err}");
    let err = out.process(&delivery("m", payload(0))).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unavailable, "{err}");
    assert!(err.message.contains("404"), "{err}");
    assert!(!topic.exists().await, "create_topic: false created nothing");
}

/// With `create_topic` (the default) a topic deleted after setup is created again when a publish
/// answers 404, and the message is published.
#[tokio::test]
async fn a_topic_deleted_after_setup_is_recreated_on_publish() {
    let topic = Topic::new().await;
    let out = topic.entry(json!({})).build(gcp_pubsub::build);
    out.setup().await.unwrap();
    let status = reqwest::Client::new()
        .delete(topic.topic_url())
        .send()
        .await
        .unwrap()
        .status();
    assert!(status.is_success());
    assert!(!topic.exists().await);
    out.process(&delivery("m_again", payload(3))).await.unwrap();
    assert!(topic.exists().await);
}

/// Nothing listens on the endpoint's port: `Transient`/`connection`.
#[tokio::test]
async fn a_closed_port_is_transient() {
    let endpoint = format!("http://127.0.0.1:{}", closed_port().await);
    let out = Entry::new("gcp_pubsub", json!({"topic": "orders"}))
        .connection("pubsub", connection(&endpoint))
        .build(gcp_pubsub::build);
    let err = out.setup().await.unwrap_err();
    assert_eq!(
        (err.kind, err.category),
        (ErrorKind::Transient, ErrorCategory::Connection),
        "{err}"
    );
    let err = out.process(&delivery("m", payload(0))).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Transient, "{err}");
}

/// Two instances on one connection entry share one client (§2.2 rule 3), and both publish.
#[tokio::test]
async fn instances_on_one_connection_share_one_client() {
    let topic = Topic::new().await;
    let shared = SharedClients::new();
    let entries = [0, 1].map(|_| topic.entry(json!({})).shared(&shared));
    let outs = entries.each_ref().map(|e| e.build(gcp_pubsub::build));
    outs[0].setup().await.unwrap();
    outs[1].setup().await.unwrap();
    topic.subscribe().await;
    for (i, out) in outs.iter().enumerate() {
        out.process(&delivery(&format!("m{i}"), payload(i as u64)))
            .await
            .unwrap();
    }
    assert_eq!(shared.live().await, 1);
    let mut ids: Vec<String> = topic
        .pull(2)
        .await
        .iter()
        .map(|m| m["attributes"]["message_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    assert_eq!(ids, ["m0", "m1"]);
    for out in &outs {
        out.teardown().await;
    }
    assert_eq!(shared.live().await, 0, "closed after the last teardown");
}

#[test]
fn bad_topics_projects_and_endpoints_are_load_errors() {
    let conn = connection("http://127.0.0.1:8085");
    let refused = |config: Value, conn: Value| {
        Entry::new("gcp_pubsub", config)
            .connection("pubsub", conn)
            .refused(gcp_pubsub::build)
            .errors
            .join("\n")
    };
    for bad in ["ab", "1topic", "goog-x", "a/b"] {
        let all = refused(json!({"topic": bad}), conn.clone());
        assert!(all.contains("module-config.topic"), "{bad}: {all}");
    }
    let all = refused(json!({}), conn.clone());
    assert!(all.contains("module-config.topic: missing field"), "{all}");
    for bad in ["Upper-Case", "short", "ends-with-", "9starts"] {
        let all = refused(
            json!({"topic": "orders"}),
            json!({"type": "gcp_pubsub", "project_id": bad}),
        );
        assert!(
            all.contains("connections.json: pubsub.project_id"),
            "{bad}: {all}"
        );
    }
    let all = refused(json!({"topic": "orders"}), json!({"type": "gcp_pubsub"}));
    assert!(all.contains("project_id: missing field"), "{all}");
    let all = refused(json!({"topic": "orders", "ordering_key": ""}), conn.clone());
    assert!(all.contains("module-config.ordering_key"), "{all}");
    let all = refused(
        json!({"topic": "orders"}),
        json!({"type": "gcp_pubsub", "project_id": PROJECT, "endpoint": "http://169.254.169.254"}),
    );
    assert!(all.contains("endpoint"), "{all}");
    let all = refused(
        json!({"topic": "orders"}),
        json!({"type": "gcp_pubsub", "project_id": PROJECT,
               "endpoint": "http://127.0.0.1:8085", "credentials_path": "/nonexistent/key.json"}),
    );
    assert!(all.contains("credentials_path: cannot read"), "{all}");
    // The legacy webhook-level `topic` is honoured.
    let entry = Entry::new("gcp_pubsub", json!({}))
        .connection("pubsub", conn)
        .webhook(json!({"topic": "legacy-topic"}));
    entry.build(gcp_pubsub::build);
}

// ---------------------------------------------------------------------------------------------
// Service-account tokens, against a token endpoint (and API stand-in) served by the test.

/// A fresh RSA key pair made with `openssl`, and a service-account key file using it.
struct KeyPair {
    dir: tempfile::TempDir,
    public_pem: String,
}

impl KeyPair {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let private = dir.path().join("private.pem");
        let public = dir.path().join("public.pem");
        openssl(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            private.to_str().unwrap(),
        ]);
        openssl(&[
            "pkey",
            "-in",
            private.to_str().unwrap(),
            "-pubout",
            "-out",
            public.to_str().unwrap(),
        ]);
        let public_pem = std::fs::read_to_string(&public).unwrap();
        KeyPair { dir, public_pem }
    }

    /// Writes a key file whose `token_uri` is `token_uri`; returns its path.
    fn key_file(&self, token_uri: &str) -> PathBuf {
        let private_pem = std::fs::read_to_string(self.dir.path().join("private.pem")).unwrap();
        let path = self.dir.path().join("service-account.json");
        let key = json!({
            "type": "service_account",
            "project_id": PROJECT,
            "private_key_id": "test-key-1",
            "private_key": private_pem,
            "client_email": "relay@wc-test-project.iam.gserviceaccount.com",
            "client_id": "1",
            "token_uri": token_uri,
        });
        std::fs::write(&path, key.to_string()).unwrap();
        path
    }

    /// Verifies `jwt`'s RS256 signature with `openssl dgst` and the public key, independently of
    /// the crate that signed it; returns its header and claims.
    fn verify_with_openssl(&self, jwt: &str) -> (Value, Value) {
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3, "{jwt}");
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let dir = self.dir.path();
        std::fs::write(dir.join("input"), format!("{}.{}", parts[0], parts[1])).unwrap();
        std::fs::write(dir.join("sig"), b64.decode(parts[2]).unwrap()).unwrap();
        let public = dir.join("public.pem");
        let out = openssl(&[
            "dgst",
            "-sha256",
            "-verify",
            public.to_str().unwrap(),
            "-signature",
            dir.join("sig").to_str().unwrap(),
            dir.join("input").to_str().unwrap(),
        ]);
        assert!(out.contains("Verified OK"), "{out}");
        let header = serde_json::from_slice(&b64.decode(parts[0]).unwrap()).unwrap();
        let claims = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
        (header, claims)
    }
}

/// Runs `openssl` (on every Debian machine; the tests say so when it is missing).
fn openssl(args: &[&str]) -> String {
    let out = std::process::Command::new("openssl")
        .args(args)
        .output()
        .expect("the gcp_pubsub token tests need the openssl command (Debian package openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What the in-process server answers and what it saw.
struct StubState {
    public_pem: String,
    token_uri: String,
    /// `expires_in` of issued tokens.
    expires_in: u64,
    /// A refusal of the token endpoint instead of a token.
    token_refusal: Option<(u16, Value)>,
    /// The API's answer to every request.
    api_answer: (u16, Value),
    /// Verified assertions, in order.
    assertions: Vec<String>,
    /// `Authorization` of each API request.
    api_auth: Vec<String>,
}

#[derive(Clone)]
struct Stub(Arc<Mutex<StubState>>);

impl Stub {
    /// Serves `/token` and, for every other path, the API stand-in.
    async fn start(public_pem: &str) -> (Stub, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let stub = Stub(Arc::new(Mutex::new(StubState {
            public_pem: public_pem.to_owned(),
            token_uri: format!("{base}/token"),
            expires_in: 3600,
            token_refusal: None,
            api_answer: (200, json!({"messageIds": ["1"]})),
            assertions: Vec::new(),
            api_auth: Vec::new(),
        })));
        let app = axum::Router::new()
            .route("/token", axum::routing::post(token))
            .fallback(api)
            .with_state(stub.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (stub, base)
    }

    fn with<R>(&self, f: impl FnOnce(&mut StubState) -> R) -> R {
        f(&mut self.0.lock().unwrap())
    }
}

/// The token endpoint: verifies the JWT-bearer assertion with the public key (signature,
/// `aud`, `iss`, `exp`) and issues `tok-<n>`.
async fn token(
    State(stub): State<Stub>,
    Form(form): Form<HashMap<String, String>>,
) -> axum::response::Response {
    let (public_pem, token_uri, expires_in, refusal) = stub.with(|s| {
        (
            s.public_pem.clone(),
            s.token_uri.clone(),
            s.expires_in,
            s.token_refusal.clone(),
        )
    });
    if let Some((status, body)) = refusal {
        return (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response();
    }
    if form.get("grant_type").map(String::as_str)
        != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "unsupported_grant_type"})),
        )
            .into_response();
    }
    let assertion = form.get("assertion").cloned().unwrap_or_default();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[token_uri]);
    validation.set_issuer(&["relay@wc-test-project.iam.gserviceaccount.com"]);
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(public_pem.as_bytes()).unwrap();
    if let Err(e) = jsonwebtoken::decode::<Value>(&assertion, &key, &validation) {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "invalid_grant", "error_description": e.to_string()})),
        )
            .into_response();
    }
    let n = stub.with(|s| {
        s.assertions.push(assertion);
        s.assertions.len()
    });
    axum::Json(json!({"access_token": format!("tok-{n}"), "expires_in": expires_in, "token_type": "Bearer"}))
        .into_response()
}

/// The API stand-in: records the `Authorization` header and answers as configured.
async fn api(
    State(stub): State<Stub>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> axum::response::Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let (status, body) = stub.with(|s| {
        s.api_auth.push(format!("{method} {} {auth}", uri.path()));
        s.api_answer.clone()
    });
    let mut response = (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response();
    if status == 429 {
        response
            .headers_mut()
            .insert("retry-after", axum::http::HeaderValue::from_static("7"));
    }
    response
}

fn credentials_connection(endpoint: &str, key_file: &Path) -> Value {
    json!({
        "type": "gcp_pubsub",
        "project_id": PROJECT,
        "endpoint": endpoint,
        "credentials_path": key_file.to_str().unwrap(),
    })
}

/// With `credentials_path`, two instances on one connection get one token from the token
/// endpoint (an RS256 assertion that verifies with the public key, with the service account as
/// `iss`, the Pub/Sub scope and the token URI as `aud`) and send it as a bearer token on every
/// request.
#[tokio::test]
async fn a_service_account_token_is_fetched_once_per_connection_and_sent_as_bearer() {
    let keys = KeyPair::new();
    let (stub, base) = Stub::start(&keys.public_pem).await;
    let key_file = keys.key_file(&format!("{base}/token"));
    let shared = SharedClients::new();
    let entries = [0, 1].map(|_| {
        Entry::new("gcp_pubsub", json!({"topic": "orders"}))
            .connection("pubsub", credentials_connection(&base, &key_file))
            .shared(&shared)
    });
    let outs = entries.each_ref().map(|e| e.build(gcp_pubsub::build));
    for out in &outs {
        out.setup().await.unwrap();
        out.process(&delivery("m1", payload(1))).await.unwrap();
        out.process(&delivery("m2", payload(2))).await.unwrap();
    }
    let (assertions, api_auth) = stub.with(|s| (s.assertions.clone(), s.api_auth.clone()));
    assert_eq!(assertions.len(), 1, "one token for the connection");
    assert_eq!(api_auth.len(), 6, "{api_auth:?}");
    for line in &api_auth {
        assert!(line.ends_with(" Bearer tok-1"), "{line}");
    }
    assert!(
        api_auth[1].starts_with("POST /v1/projects/wc-test-project/topics/orders:publish "),
        "{api_auth:?}"
    );
    let (header, claims) = keys.verify_with_openssl(&assertions[0]);
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["kid"], "test-key-1");
    assert_eq!(
        claims["iss"],
        "relay@wc-test-project.iam.gserviceaccount.com"
    );
    assert_eq!(claims["scope"], "https://www.googleapis.com/auth/pubsub");
    assert_eq!(claims["aud"], format!("{base}/token"));
    let (iat, exp) = (
        claims["iat"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap(),
    );
    assert_eq!(exp - iat, 3600);
    assert!((iat - chrono::Utc::now().timestamp()).abs() < 60);
}

/// A token is used until shortly (5 min) before it expires, then replaced: with
/// `expires_in: 301` the second message reuses it and one sent 1.2 s later gets a new one.
#[tokio::test]
async fn a_token_is_refreshed_shortly_before_it_expires() {
    let keys = KeyPair::new();
    let (stub, base) = Stub::start(&keys.public_pem).await;
    stub.with(|s| s.expires_in = 301);
    let key_file = keys.key_file(&format!("{base}/token"));
    let out = Entry::new(
        "gcp_pubsub",
        json!({"topic": "orders", "create_topic": false}),
    )
    .connection("pubsub", credentials_connection(&base, &key_file))
    .build(gcp_pubsub::build);
    out.process(&delivery("m1", payload(1))).await.unwrap();
    out.process(&delivery("m2", payload(2))).await.unwrap();
    assert_eq!(stub.with(|s| s.assertions.len()), 1);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    out.process(&delivery("m3", payload(3))).await.unwrap();
    let api_auth = stub.with(|s| s.api_auth.clone());
    assert_eq!(stub.with(|s| s.assertions.len()), 2);
    assert!(api_auth[2].ends_with("Bearer tok-2"), "{api_auth:?}");
}

/// The token endpoint refuses the grant (`invalid_grant`): `Unavailable`/`auth`. It is busy
/// (503): `Transient`.
#[tokio::test]
async fn a_refused_grant_is_unavailable_and_a_busy_token_endpoint_transient() {
    let keys = KeyPair::new();
    let (stub, base) = Stub::start(&keys.public_pem).await;
    let key_file = keys.key_file(&format!("{base}/token"));
    let out = Entry::new("gcp_pubsub", json!({"topic": "orders"}))
        .connection("pubsub", credentials_connection(&base, &key_file))
        .build(gcp_pubsub::build);
    stub.with(|s| {
        s.token_refusal = Some((
            400,
            json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}),
        ));
    });
    let err = out.setup().await.unwrap_err();
    assert_eq!(
        (err.kind, err.category),
        (ErrorKind::Unavailable, ErrorCategory::Auth),
        "{err}"
    );
    assert!(err.message.contains("invalid_grant"), "{err}");
    stub.with(|s| s.token_refusal = Some((503, json!({"error": "backend_error"}))));
    let err = out.process(&delivery("m", payload(0))).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Transient, "{err}");
    assert!(
        stub.with(|s| s.api_auth.is_empty()),
        "no API call without a token"
    );
}

/// A token and the real emulator together: the emulator ignores the bearer token, and the
/// message is read back.
#[tokio::test]
async fn a_service_account_connection_publishes_to_the_emulator() {
    let topic = Topic::new().await;
    let keys = KeyPair::new();
    let (stub, base) = Stub::start(&keys.public_pem).await;
    let key_file = keys.key_file(&format!("{base}/token"));
    let out = Entry::new("gcp_pubsub", json!({"topic": topic.name}))
        .connection("pubsub", credentials_connection(&topic.endpoint, &key_file))
        .build(gcp_pubsub::build);
    out.setup().await.unwrap();
    topic.subscribe().await;
    out.process(&delivery("msg_sa", payload(9))).await.unwrap();
    assert_eq!(decoded_data(&topic.pull(1).await[0]), payload(9));
    assert_eq!(stub.with(|s| s.assertions.len()), 1);
}

/// Answers the emulator cannot be made to give, replayed by the stand-in, map to the §3.11
/// kinds. The `INVALID_ARGUMENT` body is the emulator's own answer to an invalid publish.
#[tokio::test]
async fn api_error_answers_map_to_the_spec_kinds() {
    let (stub, base) = Stub::start("").await;
    let out = Entry::new(
        "gcp_pubsub",
        json!({"topic": "orders", "create_topic": false}),
    )
    .connection("pubsub", connection(&base))
    .build(gcp_pubsub::build);
    let cases = [
        (
            400,
            json!({"error": {"code": 400, "message": "Payload isn't valid for request.", "status": "INVALID_ARGUMENT"}}),
            ErrorKind::Permanent,
        ),
        (
            401,
            json!({"error": {"code": 401, "message": "Request had invalid authentication credentials.", "status": "UNAUTHENTICATED"}}),
            ErrorKind::Unavailable,
        ),
        (
            403,
            json!({"error": {"code": 403, "message": "User not authorized to perform this action.", "status": "PERMISSION_DENIED"}}),
            ErrorKind::Unavailable,
        ),
        (
            429,
            json!({"error": {"code": 429, "message": "Quota exceeded.", "status": "RESOURCE_EXHAUSTED"}}),
            ErrorKind::Transient,
        ),
        (
            503,
            json!({"error": {"code": 503, "message": "The service is unavailable.", "status": "UNAVAILABLE"}}),
            ErrorKind::Transient,
        ),
        (
            504,
            json!({"error": {"code": 504, "message": "Deadline exceeded.", "status": "DEADLINE_EXCEEDED"}}),
            ErrorKind::Transient,
        ),
    ];
    for (status, body, kind) in cases {
        stub.with(|s| s.api_answer = (status, body));
        let err = out.process(&delivery("m", payload(0))).await.unwrap_err();
        assert_eq!(err.kind, kind, "{status}: {err}");
        if status == 429 {
            assert_eq!(err.retry_after, Some(Duration::from_secs(7)), "{err}");
        }
    }
}
