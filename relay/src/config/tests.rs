//! Config loading tests: strictness, paths in errors, precedence, substitution, webhooks.json.

use std::path::PathBuf;

use super::*;

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "wc-relay-cfg-{tag}-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn load_with(path: Option<PathBuf>, env: &[(&str, &str)]) -> Result<RelayConfig, ConfigErrors> {
    load(&LoadOptions {
        config_path: path,
        flags: FlagOverrides::default(),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    })
}

const TOML: &str = r#"
[server]
listen = "127.0.0.1:9000"

[channel_defaults]
ack_timeout_seconds = 60

[[channels]]
name = "payments"
token = "{$PAY_TOKEN}"
max_queue_size = "50000"
[channels.webhooks.stripe]
hmac = { preset = "stripe", secret = "{$STRIPE_SECRET:whsec_x}" }
"#;

#[test]
fn a_valid_toml_file_loads_with_defaults_and_substitution() {
    let dir = TempDir::new("ok");
    let path = dir.write("relay.toml", TOML);
    let cfg = load_with(Some(path), &[("PAY_TOKEN", "tok_0123456789abcdef")]).unwrap();
    assert_eq!(cfg.file.server.listen, "127.0.0.1:9000");
    assert_eq!(cfg.backend, BackendKind::Embedded);
    let ch = &cfg.channels[0];
    assert_eq!(ch.name, "payments");
    assert_eq!(ch.token.expose(), "tok_0123456789abcdef");
    assert_eq!(ch.settings.ack_timeout_seconds, 60);
    assert_eq!(ch.settings.max_queue_size, 50_000);
    assert_eq!(ch.webhooks[0].id, "stripe");
    assert_eq!(ch.webhooks[0].entry["hmac"]["secret"], "whsec_x");
}

#[test]
fn unknown_keys_in_our_format_are_errors_with_their_path_r116() {
    let dir = TempDir::new("unknown");
    let path = dir.write(
        "relay.toml",
        "[server]\nlisten = \"127.0.0.1:1\"\nlisen = 1\n",
    );
    let err = load_with(Some(path), &[]).unwrap_err();
    assert!(
        err.errors[0].starts_with("relay.toml: server.lisen: unknown field"),
        "{:?}",
        err.errors
    );
    let path = dir.write(
        "relay2.toml",
        "[[channels]]\nname = \"a\"\ntoken = \"t\"\nbogus = 1\n",
    );
    let err = load_with(Some(path), &[]).unwrap_err();
    assert!(
        err.errors
            .iter()
            .any(|e| e.contains("channels[0].bogus: unknown field")),
        "{:?}",
        err.errors
    );
}

#[test]
fn unknown_relay_env_variables_are_errors_r116() {
    let err = load_with(None, &[("WEBHOOK_RELAY_SERVER__LISEN", "x")]).unwrap_err();
    assert_eq!(
        err.errors,
        vec!["WEBHOOK_RELAY_SERVER__LISEN: unknown setting (no key server.lisen)"]
    );
}

#[test]
fn listen_backlog_defaults_to_4096_and_is_range_checked() {
    let dir = TempDir::new("backlog");
    let path = dir.write("relay.toml", "[server]\nlisten_backlog = 512\n");
    assert_eq!(
        load_with(Some(path), &[])
            .unwrap()
            .file
            .server
            .listen_backlog,
        512
    );
    let path = dir.write("default.toml", "[server]\n");
    assert_eq!(
        load_with(Some(path), &[])
            .unwrap()
            .file
            .server
            .listen_backlog,
        4096
    );
    let path = dir.write("bad.toml", "[server]\nlisten_backlog = 70000\n");
    assert_eq!(
        load_with(Some(path), &[]).unwrap_err().errors,
        vec!["bad.toml: server.listen_backlog: must be between 1 and 65535, got 70000"]
    );
}

#[test]
fn range_errors_name_the_path() {
    let dir = TempDir::new("range");
    let path = dir.write(
        "relay.toml",
        "[channel_defaults]\nack_timeout_seconds = 0\n",
    );
    let err = load_with(Some(path), &[]).unwrap_err();
    assert_eq!(
        err.errors,
        vec!["relay.toml: channel_defaults.ack_timeout_seconds: must be between 1 and 3600, got 0"]
    );
}

#[test]
fn environment_overrides_the_file_and_lists_split_on_commas() {
    let dir = TempDir::new("env");
    let path = dir.write("relay.toml", "[server]\nlisten = \"127.0.0.1:1\"\n");
    let cfg = load_with(
        Some(path),
        &[
            ("WEBHOOK_RELAY_SERVER__LISTEN", "127.0.0.1:2"),
            ("webhook_relay_channel_defaults__ack_timeout_seconds", "1"),
            (
                "WEBHOOK_RELAY_SERVER__TRUSTED_PROXIES",
                "10.0.0.0/8, 192.168.0.0/16",
            ),
            ("WEBHOOK_RELAY_CHANNEL_DEFAULTS__MAX_IN_FLIGHT", "7"),
        ],
    )
    .unwrap();
    assert_eq!(cfg.file.server.listen, "127.0.0.1:2");
    assert_eq!(
        cfg.file.server.trusted_proxies,
        vec!["10.0.0.0/8", "192.168.0.0/16"]
    );
    assert_eq!(cfg.file.channel_defaults.max_in_flight, Some(7));
}

#[test]
fn flags_win_over_env_only_when_given() {
    let mut options = LoadOptions {
        config_path: None,
        flags: FlagOverrides {
            listen: Some("127.0.0.1:3".into()),
            ..Default::default()
        },
        env: vec![("WEBHOOK_RELAY_SERVER__LISTEN".into(), "127.0.0.1:2".into())],
    };
    assert_eq!(load(&options).unwrap().file.server.listen, "127.0.0.1:3");
    options.flags.listen = None;
    assert_eq!(load(&options).unwrap().file.server.listen, "127.0.0.1:2");
}

#[test]
fn original_variables_select_the_backend_r115() {
    assert_eq!(
        load_with(None, &[("WEBHOOK_CONNECT_REDIS_URL", "redis://x")])
            .unwrap()
            .backend,
        BackendKind::Redis
    );
    let cfg = load_with(None, &[("WEBHOOK_CONNECT_RABBITMQ_URL", "amqp://x")]).unwrap();
    assert_eq!(cfg.backend, BackendKind::RabbitMq);
    assert_eq!(cfg.file.buffer.rabbitmq.url.expose(), "amqp://x");
    let err = load_with(
        None,
        &[
            ("WEBHOOK_CONNECT_REDIS_URL", "redis://x"),
            ("WEBHOOK_CONNECT_RABBITMQ_URL", "amqp://x"),
        ],
    )
    .unwrap_err();
    assert_eq!(
        err.errors,
        vec![
            "buffer.backend: both WEBHOOK_CONNECT_REDIS_URL and WEBHOOK_CONNECT_RABBITMQ_URL are set; set buffer.backend"
        ]
    );
    let cfg = load_with(
        None,
        &[("WEBHOOK_CONNECT_ADMIN_TOKEN", "admin-token-0123456789")],
    )
    .unwrap();
    assert_eq!(cfg.admin_token.expose(), "admin-token-0123456789");
    assert_eq!(
        load_with(None, &[("RABBITMQ_URL", "amqp://y")])
            .unwrap()
            .backend,
        BackendKind::Embedded
    );
}

#[test]
fn missing_variables_are_load_errors_naming_them_r112() {
    let dir = TempDir::new("missing");
    let path = dir.write("relay.toml", TOML);
    let err = load_with(Some(path), &[]).unwrap_err();
    assert_eq!(
        err.errors,
        vec!["relay.toml: channels[0].token: environment variable PAY_TOKEN is not set"]
    );
}

#[test]
fn channel_names_are_validated_on_the_relay_r133() {
    let dir = TempDir::new("names");
    for bad in ["a*b", "a:b", "../x", "a b"] {
        let path = dir.write(
            "relay.toml",
            &format!("[[channels]]\nname = \"{bad}\"\ntoken = \"0123456789abcdef\"\n"),
        );
        let err = load_with(Some(path), &[]).unwrap_err();
        assert!(
            err.errors[0].contains("channels[0].name: Invalid channel name format"),
            "{bad}: {:?}",
            err.errors
        );
    }
}

const WEBHOOKS: &str = r#"{
  "shop-orders": {
    "data_type": "json",
    "module": "webhook_connect",
    "module-config": {"channel": "orders", "channel_token": "{$ORDERS_TOKEN}", "ttl_seconds": 86400, "max_queue_size": 10000, "ack_timeout_seconds": "60", "include_message_id": true},
    "hmac": {"secret": "s3cret", "header": "X-Shopify-Hmac-Sha256", "encoding": "base64"},
    "something_new": 1
  },
  "shop-refunds": {
    "chain": ["log", {"module": "webhook_connect", "module-config": {"channel": "orders", "channel_token": "{$ORDERS_TOKEN}"}}],
    "authorization": "Bearer x"
  },
  "to-disk": {"module": "save_to_disk", "module-config": {}}
}"#;

#[test]
fn webhooks_json_entries_build_channels_and_warn_on_unknown_keys_r117() {
    let dir = TempDir::new("wj");
    let wj = dir.write("webhooks.json", WEBHOOKS);
    let cfg = load_with(
        None,
        &[
            ("WEBHOOKS_CONFIG_FILE", wj.to_str().unwrap()),
            ("ORDERS_TOKEN", "orders-token-0123456789"),
        ],
    )
    .unwrap();
    let ch = &cfg.channels[0];
    assert_eq!(ch.name, "orders");
    assert_eq!(ch.settings.ack_timeout_seconds, 60);
    assert_eq!(
        ch.webhooks
            .iter()
            .map(|w| w.id.as_str())
            .collect::<Vec<_>>(),
        vec!["shop-orders", "shop-refunds"]
    );
    assert!(
        cfg.warnings
            .iter()
            .any(|w| w.contains("include_message_id"))
    );
    assert!(cfg.warnings.iter().any(|w| w.contains("something_new")));
    assert!(
        cfg.warnings
            .iter()
            .any(|w| w.contains("to-disk: not a webhook_connect entry"))
    );
}

#[test]
fn conflicting_channel_settings_name_both_webhooks_r119() {
    let dir = TempDir::new("conflict");
    let wj = dir.write(
        "webhooks.json",
        r#"{"shop-orders": {"module": "webhook_connect", "module-config": {"channel": "orders", "channel_token": "a-token-0123456789"}},
            "shop-refunds": {"module": "webhook_connect", "module-config": {"channel": "orders", "channel_token": "b-token-0123456789"}}}"#,
    );
    let err = load_with(None, &[("WEBHOOKS_CONFIG_FILE", wj.to_str().unwrap())]).unwrap_err();
    assert_eq!(
        err.errors,
        vec![
            "webhooks.json: shop-refunds.module-config.channel_token: conflicts with shop-orders.module-config.channel_token for channel \"orders\""
        ]
    );
}

#[test]
fn bad_data_type_and_bad_webhook_ids_are_errors() {
    let dir = TempDir::new("bad");
    let wj = dir.write(
        "webhooks.json",
        r#"{"admin": {"module": "webhook_connect", "module-config": {"channel": "c", "channel_token": "t"}},
            "ok": {"data_type": "xml", "module": "webhook_connect", "module-config": {"channel": "c", "channel_token": "t"}}}"#,
    );
    let err = load_with(None, &[("WEBHOOKS_CONFIG_FILE", wj.to_str().unwrap())]).unwrap_err();
    assert!(err.errors.iter().any(|e| e == "webhooks.json: admin: Webhook ID 'admin' is reserved and cannot be used"), "{:?}", err.errors);
    assert!(
        err.errors
            .iter()
            .any(|e| e.starts_with("webhooks.json: ok.data_type")),
        "{:?}",
        err.errors
    );
}

#[test]
fn json_config_files_work_and_other_extensions_do_not() {
    let dir = TempDir::new("ext");
    let path = dir.write("relay.json", r#"{"server": {"listen": "127.0.0.1:5"}}"#);
    assert_eq!(
        load_with(Some(path), &[]).unwrap().file.server.listen,
        "127.0.0.1:5"
    );
    let path = dir.write("relay.yaml", "server: {}");
    assert!(
        load_with(Some(path), &[]).unwrap_err().errors[0].contains("unknown configuration format")
    );
}

#[test]
fn rabbitmq_keys_are_checked_and_select_the_backend() {
    let dir = TempDir::new("rabbit");
    let path = dir.write(
        "relay.toml",
        "[buffer]\nbackend = \"rabbitmq\"\n[buffer.rabbitmq]\nurl = \"amqp://u:p@127.0.0.1:5672/%2f\"\nexchange = \"wc\"\nprefetch = 50\noperation_timeout_ms = 2000\n",
    );
    let cfg = load_with(Some(path), &[]).unwrap();
    assert_eq!(cfg.backend, BackendKind::RabbitMq);
    assert_eq!(cfg.file.buffer.rabbitmq.exchange, "wc");
    assert_eq!(cfg.file.buffer.rabbitmq.prefetch, 50);
    let bad = dir.write(
        "bad.toml",
        "[buffer.rabbitmq]\nurl = \"http://127.0.0.1/\"\nexchange = \"a b\"\nprefetch = 0\n",
    );
    let err = load_with(Some(bad), &[]).unwrap_err();
    for want in [
        "bad.toml: buffer.rabbitmq.prefetch: must be between 1 and 65535, got 0",
        "bad.toml: buffer.rabbitmq.exchange: must match ^[A-Za-z0-9_.-]{1,64}$",
        "bad.toml: buffer.rabbitmq.url: must be an amqp:// or amqps:// URL",
    ] {
        assert!(
            err.errors.iter().any(|e| e == want),
            "{want} not in {:?}",
            err.errors
        );
    }
}

#[test]
fn redis_cluster_nodes_are_checked_and_exclude_a_url() {
    let dir = TempDir::new("redis-cluster");
    let path = dir.write(
        "relay.toml",
        "[buffer]\nbackend = \"redis\"\n[buffer.redis]\ncluster_nodes = [\"redis://:pw@10.0.0.1:6379\", \"redis://:pw@10.0.0.2:6379\"]\nwait_replicas = 1\n",
    );
    let cfg = load_with(Some(path), &[]).unwrap();
    assert_eq!(cfg.file.buffer.redis.cluster_nodes.len(), 2);
    assert_eq!(cfg.file.buffer.redis.wait_replicas, 1);
    let printed = redact::redact_file(&cfg.file).to_string();
    assert!(!printed.contains("pw"), "{printed}");
    let env = load_with(
        None,
        &[(
            "WEBHOOK_RELAY_BUFFER__REDIS__CLUSTER_NODES",
            "redis://10.0.0.1:6379, redis://10.0.0.2:6379",
        )],
    )
    .unwrap();
    assert_eq!(env.file.buffer.redis.cluster_nodes.len(), 2);
    let bad = dir.write(
        "bad.toml",
        "[buffer.redis]\nurl = \"redis://10.0.0.9:6379/0\"\ncluster_nodes = [\"unix:///tmp/r.sock\"]\nwait_replicas = 17\n",
    );
    let err = load_with(Some(bad), &[]).unwrap_err();
    for want in [
        "bad.toml: buffer.redis: set either url (one server) or cluster_nodes (a Redis Cluster), not both",
        "bad.toml: buffer.redis.cluster_nodes: cluster node 1 must be a redis:// or rediss:// URL",
        "bad.toml: buffer.redis.wait_replicas: must be between 0 and 16, got 17",
    ] {
        assert!(
            err.errors.iter().any(|e| e == want),
            "{want} not in {:?}",
            err.errors
        );
    }
}

#[test]
fn errors_are_blamed_on_the_variable_that_set_the_value_r120() {
    let dir = TempDir::new("blame");
    let path = dir.write("relay.toml", "[server]\nmax_json_depth = 0\n");
    let err = load_with(
        Some(path),
        &[
            ("WEBHOOK_CONNECT_RABBITMQ_URL", "http://not-amqp"),
            ("WEBHOOK_RELAY_SERVER__MAX_BODY_BYTES", "abc"),
            ("WEBHOOK_RELAY_LIMITS__MAX_WEBHOOKS", "0"),
        ],
    )
    .unwrap_err();
    let all = err.errors.join("\n");
    for expected in [
        "WEBHOOK_CONNECT_RABBITMQ_URL: buffer.rabbitmq.url: must be an amqp:// or amqps:// URL",
        "WEBHOOK_RELAY_SERVER__MAX_BODY_BYTES: server.max_body_bytes: ",
        "WEBHOOK_RELAY_LIMITS__MAX_WEBHOOKS: limits.max_webhooks: must be between 1",
        "relay.toml: server.max_json_depth: must be between 1 and 1000, got 0",
    ] {
        assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
    }
    assert!(!all.contains("relay.toml: server.max_body_bytes"), "{all}");
}

#[test]
fn every_typed_error_is_reported_in_one_pass() {
    let dir = TempDir::new("one-pass");
    let path = dir.write(
        "relay.toml",
        "[server]\nmax_body_bytes = \"x\"\nunknown = 1\n[log]\nformat = 3\n[limits]\nmax_channels = \"y\"\n",
    );
    let err = load_with(Some(path), &[]).unwrap_err();
    let all = err.errors.join("\n");
    for key in [
        "server.max_body_bytes",
        "server.unknown",
        "log.format",
        "limits.max_channels",
    ] {
        assert!(
            all.contains(&format!("relay.toml: {key}: ")),
            "{key}:\n{all}"
        );
    }
}

#[test]
fn an_unreadable_or_malformed_state_key_is_a_load_error() {
    let dir = TempDir::new("state-key");
    let key = dir.write("state.key", "not a key\n");
    let path = dir.write(
        "relay.toml",
        &format!("[state]\nencryption_key_file = \"{}\"\n", key.display()),
    );
    let err = load_with(Some(path.clone()), &[]).unwrap_err();
    assert!(
        err.errors
            .iter()
            .any(|e| e.starts_with("relay.toml: state.encryption_key_file: ")),
        "{err}"
    );
    let err = load_with(
        Some(path),
        &[(
            "WEBHOOK_RELAY_STATE__ENCRYPTION_KEY_FILE",
            "/nonexistent/wc-key",
        )],
    )
    .unwrap_err();
    assert!(
        err.errors.iter().any(|e| e.starts_with(
            "WEBHOOK_RELAY_STATE__ENCRYPTION_KEY_FILE: state.encryption_key_file: cannot read"
        )),
        "{err}"
    );
    std::fs::write(&key, format!("{}\n", "ab".repeat(32))).unwrap();
    let path = dir.write(
        "relay.toml",
        &format!("[state]\nencryption_key_file = \"{}\"\n", key.display()),
    );
    assert!(load_with(Some(path), &[]).is_ok());
}
