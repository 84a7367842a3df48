//! Secrets and validation of the relay's configuration (issue 17, items 6 and 7): `print-config`
//! masks every secret, `check-config` runs the start-up validation and blames each value on its
//! source, files are created 0600, the state store keeps admin-created channels' verification
//! secrets encrypted, and `limits.max_webhooks` bounds admin creation.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::{Store, TestRelay, temp_dir};
use webhook_relay::config::{FlagOverrides, LoadOptions, load};

const ADMIN: &str = "admin-token-0123456789abcdef";

fn relay_bin(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_webhook-relay"));
    cmd.env_clear().current_dir(dir).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Every kind of secret the relay file and an original `webhooks.json` can hold.
const SECRETS: &[&str] = &[
    "ADMIN-SECRET-0123456789",
    "METRICS-SECRET-VALUE",
    "REDIS-PW-SECRET",
    "RABBIT-PW-SECRET",
    "STATE-PW-SECRET",
    "CHANNEL-TOKEN-SECRET-1",
    "HMAC-SECRET-VALUE",
    "BEARER-SECRET-VALUE",
    "BASIC-PW-SECRET",
    "DIGEST-PW-SECRET",
    "JWT-SECRET-VALUE",
    "HEADER-KEY-SECRET",
    "QUERY-KEY-SECRET",
    "OAUTH1-CS-SECRET",
    "OAUTH2-JWT-SECRET",
    "RECAPTCHA-SECRET",
    "WJ-CHANNEL-TOKEN-SECRET",
    "WJ-HMAC-SECRET",
    "WJ-BEARER-SECRET",
];

fn secret_config(dir: &Path) -> PathBuf {
    std::fs::write(
        dir.join("webhooks.json"),
        r#"{
  "shop": {"module": "webhook_connect",
           "module-config": {"channel": "orders", "channel_token": "WJ-CHANNEL-TOKEN-SECRET", "max_queue_size": 777},
           "hmac": {"secret": "WJ-HMAC-SECRET", "header": "X-Shop-Sig", "encoding": "base64"}},
  "refunds": {"module": "webhook_connect",
              "module-config": {"channel": "orders", "channel_token": "WJ-CHANNEL-TOKEN-SECRET"},
              "authorization": "Bearer WJ-BEARER-SECRET"}
}"#,
    )
    .unwrap();
    let toml = format!(
        r#"
[server]
listen = "127.0.0.1:18999"
[admin]
token = "ADMIN-SECRET-0123456789"
[buffer]
backend = "embedded"
[buffer.embedded]
path = "{dir}/store.db"
[buffer.redis]
url = "redis://relayuser:REDIS-PW-SECRET@redis-host:6379/0"
key_prefix = "visible_prefix"
[buffer.rabbitmq]
url = "amqp://rabbit:RABBIT-PW-SECRET@rabbit-host:5672/%2f"
[state]
path = "{dir}/state.json"
redis_url = "redis://:STATE-PW-SECRET@state-host:6380/1"
[metrics]
bearer_token = "METRICS-SECRET-VALUE"
[ingest]
webhooks_file = "{dir}/webhooks.json"

[[channels]]
name = "payments"
token = "CHANNEL-TOKEN-SECRET-1"
max_queue_size = 4242
[channels.webhooks.stripe]
hmac = {{ preset = "stripe", secret = "HMAC-SECRET-VALUE" }}
[channels.webhooks.bearer]
authorization = "Bearer BEARER-SECRET-VALUE"
[channels.webhooks.basic]
basic_auth = {{ username = "alice", password = "BASIC-PW-SECRET" }}
[channels.webhooks.digest]
digest_auth = {{ username = "bob", password = "DIGEST-PW-SECRET", realm = "visible-realm" }}
[channels.webhooks.jwt]
jwt = {{ secret = "JWT-SECRET-VALUE", algorithm = "HS256" }}
[channels.webhooks.apikey]
header_auth = {{ header_name = "X-Api-Key", api_key = "HEADER-KEY-SECRET" }}
[channels.webhooks.querykey]
query_auth = {{ parameter_name = "key", api_key = "QUERY-KEY-SECRET" }}
[channels.webhooks.oauth1]
oauth1 = {{ consumer_key = "consumer", consumer_secret = "OAUTH1-CS-SECRET" }}
[channels.webhooks.oauth2]
oauth2 = {{ jwt_secret = "OAUTH2-JWT-SECRET" }}
[channels.webhooks.captcha]
recaptcha = {{ secret_key = "RECAPTCHA-SECRET" }}
ip_whitelist = ["10.1.2.3"]
"#,
        dir = dir.display()
    );
    let path = dir.join("relay.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

#[test]
fn print_config_masks_every_secret_and_shows_the_rest_r126() {
    let dir = temp_dir("print-config");
    let config = secret_config(&dir);
    let config = config.to_str().unwrap();
    // The configuration is valid, so print-config has something to print.
    let check = relay_bin(&dir, &["check-config", "--config", config], &[]);
    assert!(check.status.success(), "{}", text(&check.stderr));
    let out = relay_bin(&dir, &["print-config", "--config", config], &[]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for secret in SECRETS {
        assert!(!stdout.contains(secret), "{secret} printed:\n{stdout}");
        assert!(!text(&out.stderr).contains(secret), "{secret} on stderr");
    }
    let printed: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(printed["server"]["listen"], "127.0.0.1:18999");
    assert_eq!(printed["admin"]["token"], "***");
    assert_eq!(printed["metrics"]["bearer_token"], "***");
    assert_eq!(
        printed["buffer"]["redis"]["url"],
        "redis://relayuser:***@redis-host:6379/0"
    );
    assert_eq!(printed["buffer"]["redis"]["key_prefix"], "visible_prefix");
    assert_eq!(
        printed["buffer"]["rabbitmq"]["url"],
        "amqp://rabbit:***@rabbit-host:5672/%2f"
    );
    assert_eq!(
        printed["state"]["redis_url"],
        "redis://:***@state-host:6380/1"
    );
    let payments = &printed["channels"][0];
    assert_eq!(payments["name"], "payments");
    assert_eq!(payments["token"], "***");
    assert_eq!(payments["max_queue_size"], 4242);
    let webhooks = &payments["webhooks"];
    assert_eq!(webhooks["stripe"]["hmac"]["preset"], "stripe");
    assert_eq!(webhooks["stripe"]["hmac"]["secret"], "***");
    assert_eq!(webhooks["bearer"]["authorization"], "***");
    assert_eq!(webhooks["digest"]["digest_auth"]["realm"], "visible-realm");
    assert_eq!(webhooks["jwt"]["jwt"]["algorithm"], "HS256");
    assert_eq!(
        webhooks["apikey"]["header_auth"]["header_name"],
        "X-Api-Key"
    );
    assert_eq!(webhooks["querykey"]["query_auth"]["parameter_name"], "key");
    assert_eq!(webhooks["captcha"]["ip_whitelist"][0], "10.1.2.3");
    // The channel an original webhooks.json defines is shown too, masked.
    let orders = &printed["webhooks_file_channels"][0];
    assert_eq!(orders["name"], "orders");
    assert_eq!(orders["token"], "***");
    assert_eq!(orders["max_queue_size"], 777);
    assert_eq!(orders["webhooks"]["shop"]["hmac"]["header"], "X-Shop-Sig");
    assert_eq!(orders["webhooks"]["shop"]["hmac"]["secret"], "***");
    assert_eq!(orders["webhooks"]["refunds"]["authorization"], "***");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_config_refuses_what_run_refuses_and_reports_every_problem_r120() {
    let dir = temp_dir("check-config-all");
    let toml = r#"
[server]
listen = "127.0.0.1:18998"
max_body_bytes = "lots"
shutdown_grace_seconds = "soon"
bogus_key = 1

[[channels]]
name = "a"
token = "token-aaaaaaaaaaaaaaaa"
[channels.webhooks.unknown-preset]
hmac = { preset = "no-such-sender", secret = "s1" }
[channels.webhooks.empty-secret]
hmac = { preset = "github", secret = "" }
[channels.webhooks.jwt-none]
jwt = { secret = "s2", algorithm = "none" }
[channels.webhooks.empty-hmac]
hmac = {}
[channels.webhooks.loopback]
oauth2 = { introspection_endpoint = "https://127.0.0.1/introspect" }
[channels.webhooks.metadata]
oauth2 = { introspection_endpoint = "https://169.254.169.254/introspect" }

[[channels]]
name = "a"
token = "token-bbbbbbbbbbbbbbbb"
"#;
    std::fs::write(dir.join("relay.toml"), toml).unwrap();
    let out = relay_bin(&dir, &["check-config", "--config", "relay.toml"], &[]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for (what, needle) in [
        ("typed value", "relay.toml: server.max_body_bytes"),
        (
            "second typed value",
            "relay.toml: server.shutdown_grace_seconds",
        ),
        ("unknown key", "bogus_key"),
        ("unknown preset", "webhooks.unknown-preset.hmac"),
        ("empty secret", "webhooks.empty-secret.hmac"),
        ("JWT none", "webhooks.jwt-none.jwt"),
        ("empty hmac", "webhooks.empty-hmac.hmac"),
        ("loopback introspection", "webhooks.loopback.oauth2"),
        ("metadata introspection", "webhooks.metadata.oauth2"),
        (
            "duplicate channel",
            "channel \"a\" is defined more than once",
        ),
    ] {
        assert!(stderr.contains(needle), "{what} not reported:\n{stderr}");
    }
    assert!(!stderr.contains("s1") || !stderr.contains("s2"), "{stderr}");
    // And `run` refuses the same file with the same messages, before listening.
    let run = relay_bin(&dir, &["run", "--config", "relay.toml"], &[]);
    assert_eq!(run.status.code(), Some(2));
    assert!(text(&run.stderr).contains("channel \"a\" is defined more than once"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn errors_name_the_variable_or_flag_that_set_the_value_r120() {
    let dir = temp_dir("check-config-blame");
    std::fs::write(
        dir.join("relay.toml"),
        "[server]\nlisten = \"127.0.0.1:18997\"\nmax_json_depth = 0\n",
    )
    .unwrap();
    let out = relay_bin(
        &dir,
        &[
            "check-config",
            "--config",
            "relay.toml",
            "--log-level",
            "loud",
        ],
        &[
            ("WEBHOOK_RELAY_SERVER__MAX_BODY_BYTES", "abc"),
            ("WEBHOOK_RELAY_STREAMING__SSE_RETRY_MS", "999999999"),
        ],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("WEBHOOK_RELAY_SERVER__MAX_BODY_BYTES: server.max_body_bytes"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("relay.toml: server.max_body_bytes"),
        "{stderr}"
    );
    assert!(
        stderr.contains("WEBHOOK_RELAY_STREAMING__SSE_RETRY_MS: streaming.sse_retry_ms"),
        "{stderr}"
    );
    assert!(stderr.contains("--log-level: log.level"), "{stderr}");
    // The file's own error is still blamed on the file, in the same pass.
    assert!(
        stderr.contains("relay.toml: server.max_json_depth"),
        "{stderr}"
    );
    // The flag works after the subcommand and before it alike.
    let before = relay_bin(
        &dir,
        &[
            "--log-level",
            "loud",
            "check-config",
            "--config",
            "relay.toml",
        ],
        &[],
    );
    assert!(text(&before.stderr).contains("--log-level: log.level"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn duplicate_channel_names_are_load_errors() {
    let dir = temp_dir("dup-channels");
    let path = dir.join("relay.toml");
    std::fs::write(
        &path,
        "[[channels]]\nname = \"x\"\ntoken = \"t1-aaaaaaaaaaaaaaaa\"\n[[channels]]\nname = \"x\"\ntoken = \"t2-aaaaaaaaaaaaaaaa\"\n",
    )
    .unwrap();
    let err = load(&LoadOptions {
        config_path: Some(path),
        flags: FlagOverrides::default(),
        env: vec![],
    })
    .unwrap_err();
    assert!(
        err.errors
            .iter()
            .any(|e| e.contains("channel \"x\" is defined more than once")),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn configured_webhooks_beyond_max_webhooks_are_load_errors() {
    let dir = temp_dir("max-webhooks-load");
    let path = dir.join("relay.toml");
    std::fs::write(
        &path,
        "[limits]\nmax_webhooks = 1\n[[channels]]\nname = \"x\"\ntoken = \"t1-aaaaaaaaaaaaaaaa\"\n[channels.webhooks.a]\n[channels.webhooks.b]\n",
    )
    .unwrap();
    let err = load(&LoadOptions {
        config_path: Some(path),
        flags: FlagOverrides::default(),
        env: vec![],
    })
    .unwrap_err();
    assert!(
        err.errors
            .iter()
            .any(|e| e.contains("exceed limits.max_webhooks (1)")),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn admin_with(extra_state: &str) -> String {
    format!("{extra_state}\n[admin]\ntoken = \"{ADMIN}\"")
}

const SECRET_CHANNEL: &str = r#"{"name":"payments","webhooks":{"stripe":{"hmac":{"preset":"github","secret":"whsec_STATE_SECRET_1"}},"card":{"authorization":"Bearer STATE-BEARER-SECRET"}}}"#;

async fn post_with_bearer(relay: &TestRelay, webhook: &str, auth: &str) -> u16 {
    relay
        .http
        .post(format!("{}/webhook/{webhook}", relay.base))
        .header("authorization", auth)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn write_key(dir: &Path, name: &str, byte: u8) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{}\n", format!("{byte:02x}").repeat(32))).unwrap();
    path
}

#[tokio::test]
async fn admin_channel_secrets_are_encrypted_at_rest_and_survive_restart_r132() {
    let dir = temp_dir("state-encrypted");
    let keys = temp_dir("state-keys");
    let key = write_key(&keys, "state.key", 0x42);
    let extra = admin_with(&format!("encryption_key_file = \"{}\"", key.display()));
    let mut relay = TestRelay::start_in(dir.clone(), "", &extra).await;
    let (status, body) = relay
        .admin_call(
            ADMIN,
            reqwest::Method::POST,
            "/channels",
            Some(SECRET_CHANNEL),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        post_with_bearer(&relay, "card", "Bearer STATE-BEARER-SECRET").await,
        200
    );
    relay.stop().await;
    let state_path = dir.join("state.json");
    let stored = std::fs::read_to_string(&state_path).unwrap();
    for secret in ["whsec_STATE_SECRET_1", "STATE-BEARER-SECRET"] {
        assert!(
            !stored.contains(secret),
            "{secret} in the state file:\n{stored}"
        );
    }
    assert!(stored.contains("sealed_webhooks"), "{stored}");
    #[cfg(unix)]
    {
        assert_eq!(mode(&state_path), 0o600, "state file mode");
        assert_eq!(mode(&dir.join("relay.db")), 0o600, "store file mode");
    }
    assert!(
        !dir.join("state.json.key").exists(),
        "no key is generated when one is configured"
    );
    // Restarted with the same key: the channel and its secrets are back.
    let relay = TestRelay::start_in(dir.clone(), "", &extra).await;
    assert_eq!(
        post_with_bearer(&relay, "card", "Bearer STATE-BEARER-SECRET").await,
        200
    );
    assert_eq!(post_with_bearer(&relay, "card", "Bearer wrong").await, 401);
    let (status, details) = relay
        .admin_call(ADMIN, reqwest::Method::GET, "/channels/payments", None)
        .await;
    assert_eq!(status, 200, "{details}");
    drop(relay);
    let _ = std::fs::remove_dir_all(&keys);
}

/// Starts a relay from `dir/relay.toml` as written by [`TestRelay::start_in`], with
/// `encryption_key_file` replaced; the start-up error, if any.
async fn start_error_with_key(dir: &Path, from: &str, to: &str) -> Option<String> {
    let path = dir.join("relay.toml");
    let text = std::fs::read_to_string(&path).unwrap().replace(from, to);
    std::fs::write(&path, text).unwrap();
    let config = match load(&LoadOptions {
        config_path: Some(path),
        flags: FlagOverrides::default(),
        env: vec![],
    }) {
        Ok(c) => c,
        Err(e) => return Some(e.to_string()),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let run = tokio::spawn(webhook_relay::run(config, listener, shutdown.clone()));
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    shutdown.cancel();
    run.await.unwrap().err().map(|e| e.to_string())
}

#[tokio::test]
async fn a_wrong_or_missing_key_refuses_to_start_with_a_clear_error_r132() {
    let dir = temp_dir("state-wrong-key");
    let keys = temp_dir("state-wrong-keys");
    let good = write_key(&keys, "good.key", 0x11);
    let bad = write_key(&keys, "bad.key", 0x22);
    let line = format!("encryption_key_file = \"{}\"", good.display());
    let mut relay = TestRelay::start_in(dir.clone(), "", &admin_with(&line)).await;
    let (status, body) = relay
        .admin_call(
            ADMIN,
            reqwest::Method::POST,
            "/channels",
            Some(SECRET_CHANNEL),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    relay.stop().await;

    let wrong = start_error_with_key(
        &dir,
        &line,
        &format!("encryption_key_file = \"{}\"", bad.display()),
    )
    .await
    .expect("a wrong key must refuse to start");
    assert!(
        wrong.contains("payments")
            && wrong.contains("cannot decrypt")
            && wrong.contains("wrong key"),
        "{wrong}"
    );
    // No key configured (and none generated for this file): refused as well, naming the setting.
    let bad_line = format!("encryption_key_file = \"{}\"", bad.display());
    let missing = start_error_with_key(&dir, &bad_line, "")
        .await
        .expect("encrypted records without a key must refuse to start");
    assert!(missing.contains("state.encryption_key_file"), "{missing}");
    drop(relay);
    let _ = std::fs::remove_dir_all(&keys);
}

#[tokio::test]
async fn plaintext_records_of_earlier_versions_load_and_are_encrypted_r132() {
    let dir = temp_dir("state-migrate");
    // A state file as an earlier version wrote it: the definition with its secret in clear.
    let token = "ch_tok_plaintext_migration_0001";
    let hash: String = {
        use sha2::Digest;
        sha2::Sha256::digest(token.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let old = serde_json::json!({"channels": {"legacy": {
        "configured_token": null,
        "current_token": hash,
        "previous_token": null,
        "rotated_at": null,
        "paused": false,
        "created_at": null,
        "definition": {"name": "legacy", "webhooks": {"legacy-hook": {"authorization": "Bearer LEGACY-PLAIN-SECRET"}}}
    }}});
    std::fs::write(dir.join("state.json"), old.to_string()).unwrap();
    let relay = TestRelay::start_in(dir.clone(), "", &admin_with("")).await;
    assert_eq!(
        post_with_bearer(&relay, "legacy-hook", "Bearer LEGACY-PLAIN-SECRET").await,
        200,
        "the plaintext record still loads"
    );
    let stored = std::fs::read_to_string(dir.join("state.json")).unwrap();
    assert!(!stored.contains("LEGACY-PLAIN-SECRET"), "{stored}");
    assert!(stored.contains("sealed_webhooks"), "{stored}");
    // Without a configured key the embedded store generated one beside the state file, 0600.
    let key = dir.join("state.json.key");
    assert!(key.exists());
    #[cfg(unix)]
    assert_eq!(mode(&key), 0o600);
}

#[tokio::test]
async fn shared_state_without_a_key_refuses_admin_secrets_with_422() {
    let relay = TestRelay::start_on(Store::Redis, "state-redis-nokey", "", &admin_with("")).await;
    let (status, body) = relay
        .admin_call(
            ADMIN,
            reqwest::Method::POST,
            "/channels",
            Some(SECRET_CHANNEL),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("state.encryption_key_file"), "{body}");
    assert!(!detail.contains("whsec_STATE_SECRET_1"), "{body}");
    // A definition without secrets is still accepted.
    let (status, body) = relay
        .admin_call(
            ADMIN,
            reqwest::Method::POST,
            "/channels",
            Some(r#"{"name":"plain","webhooks":{"plain-hook":{"ip_whitelist":["127.0.0.1"]}}}"#),
        )
        .await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn shared_state_with_a_key_stores_no_secret_in_redis_r132() {
    let keys = temp_dir("state-redis-keys");
    let key = write_key(&keys, "k", 0x33);
    // The first lines of `extra` land in [state]: the shared store, with a key.
    let prefix = format!("wc_relay_it_{:016x}", rand::random::<u64>());
    let extra = admin_with(&format!(
        "encryption_key_file = \"{}\"\nbackend = \"redis\"\nredis_url = \"{}\"\nkey_prefix = \"{prefix}\"",
        key.display(),
        crate::support::redis_url()
    ));
    let relay = TestRelay::start_in(temp_dir("state-redis-key"), "", &extra).await;
    let (status, body) = relay
        .admin_call(
            ADMIN,
            reqwest::Method::POST,
            "/channels",
            Some(SECRET_CHANNEL),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        post_with_bearer(&relay, "card", "Bearer STATE-BEARER-SECRET").await,
        200
    );
    let client = redis::Client::open(crate::support::redis_url()).unwrap();
    let mut conn = client.get_connection().unwrap();
    let stored: Option<String> = redis::cmd("HGET")
        .arg(format!("{prefix}:state:channels"))
        .arg("payments")
        .query(&mut conn)
        .unwrap();
    let stored = stored.unwrap();
    assert!(!stored.contains("whsec_STATE_SECRET_1"), "{stored}");
    assert!(!stored.contains("STATE-BEARER-SECRET"), "{stored}");
    let keys_to_delete: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query(&mut conn)
        .unwrap();
    drop(relay);
    if !keys_to_delete.is_empty() {
        let _: Result<u64, _> = redis::cmd("DEL").arg(&keys_to_delete).query(&mut conn);
    }
    let _ = std::fs::remove_dir_all(&keys);
}

#[tokio::test]
async fn admin_creation_beyond_max_webhooks_is_refused_with_409() {
    // `orders` has two webhooks; the limit leaves room for one more.
    let relay = TestRelay::start(
        "max-webhooks-admin",
        "",
        &format!("[limits]\nmax_webhooks = 3\n[admin]\ntoken = \"{ADMIN}\""),
    )
    .await;
    let (status, body) = relay
        .admin_call(
            ADMIN,
            reqwest::Method::POST,
            "/channels",
            Some(r#"{"name":"two","webhooks":{"t1":{},"t2":{}}}"#),
        )
        .await;
    assert_eq!(
        (status, body["detail"].as_str()),
        (409, Some("Webhook limit reached")),
        "{body}"
    );
    let (status, body) = relay
        .admin_call(
            ADMIN,
            reqwest::Method::POST,
            "/channels",
            Some(r#"{"name":"one","webhooks":{"t1":{}}}"#),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = relay
        .admin_call(
            ADMIN,
            reqwest::Method::PATCH,
            "/channels/one",
            Some(r#"{"webhooks":{"t2":{}}}"#),
        )
        .await;
    assert_eq!(
        (status, body["detail"].as_str()),
        (409, Some("Webhook limit reached")),
        "{body}"
    );
}

async fn post_with_extra_headers(relay: &TestRelay, count: usize) -> (u16, serde_json::Value) {
    let mut request = relay
        .http
        .post(format!("{}/webhook/shop", relay.base))
        .header("content-type", "application/json")
        .body("{}");
    for i in 0..count {
        request = request.header(format!("x-extra-{i}"), "v");
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

#[tokio::test]
async fn max_header_count_answers_with_the_json_error_r14() {
    // The default limit (100): 120 headers reach the relay's own check, not an empty 431.
    let relay = TestRelay::start("max-header-default", "", "").await;
    let (status, body) = post_with_extra_headers(&relay, 120).await;
    assert_eq!(status, 400, "{body}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.starts_with("Too many headers:") && detail.ends_with("(max: 100)"),
        "{body}"
    );
    let (status, _) = post_with_extra_headers(&relay, 50).await;
    assert_eq!(status, 200);
    // A configured limit takes effect.
    let relay =
        TestRelay::start_with_server(temp_dir("max-header-count"), "max_header_count = 5", "", "")
            .await;
    let (status, body) = post_with_extra_headers(&relay, 8).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .ends_with("(max: 5)"),
        "{body}"
    );
}
