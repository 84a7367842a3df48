//! Configuration loading: precedence, substitution, strictness, `check-config` (R-71, R-72,
//! R-74, R-120).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use webhook_connector::config::load::load_with_env;
use webhook_connector::config::{Flags, Protocol, TokenSource};

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name: &str| map.get(name).cloned()
}

const BASIC: &str = r#"{
  "cloud_url": "https://relay.example.com/",
  "channel": "orders",
  "token": "file-token",
  "protocol": "sse",
  "log_level": "DEBUG",
  "reconnect_delay": 2,
  "default_target": {"url": "http://127.0.0.1:3000/hook", "timeout_seconds": 5}
}"#;

#[test]
fn precedence_is_defaults_file_env_then_flags_actually_passed_r71() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "connector.json", BASIC);
    let flags = Flags {
        config: Some(path.clone()),
        ..Flags::default()
    };
    // File only: `protocol: sse` and the log level apply (no flag default overrides them).
    let (c, _) = load_with_env(&flags, &env(&[])).unwrap();
    assert_eq!(c.cloud_url, "https://relay.example.com");
    assert_eq!(c.channels[0].protocol, Protocol::Sse);
    assert_eq!(c.log_level, "debug");
    assert_eq!(c.reconnect.initial, Duration::from_secs(2));
    assert_eq!(c.reconnect.max, Duration::from_secs(60));
    // Env applies even with --config; an empty variable counts as unset.
    let e = env(&[
        ("CONNECTOR_RECONNECT_DELAY", "3"),
        ("CONNECTOR_LOG_LEVEL", "warning"),
        ("CONNECTOR_TARGET_TIMEOUT", "7"),
        ("CONNECTOR_PROTOCOL", ""),
    ]);
    let (c, _) = load_with_env(&flags, &e).unwrap();
    assert_eq!(c.reconnect.initial, Duration::from_secs(3));
    assert_eq!(c.log_level, "warn");
    assert_eq!(c.channels[0].protocol, Protocol::Sse);
    let t = c.channels[0].default_target.as_ref().unwrap();
    assert_eq!(t.timeout, Duration::from_secs(7));
    assert_eq!(
        t.url, "http://127.0.0.1:3000/hook",
        "other target fields are kept"
    );
    // Flags actually passed win over env and file.
    let flags = Flags {
        config: Some(path),
        protocol: Some("long_poll".into()),
        log_level: Some("error".into()),
        token_file: Some(write(&dir, "token", "from-file\n")),
        ..Flags::default()
    };
    let (c, _) = load_with_env(&flags, &e).unwrap();
    assert_eq!(c.channels[0].protocol, Protocol::LongPoll);
    assert_eq!(c.log_level, "error");
    assert!(matches!(c.channels[0].token, TokenSource::File(_)));
    assert_eq!(c.channels[0].token.read().unwrap().expose(), "from-file");
}

#[test]
fn connector_file_values_are_substituted_r72() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "connector.toml",
        r#"
cloud_url = "http://{$RELAY_HOST:127.0.0.1}:8080"
channel = "orders"
token = "{$ORDERS_TOKEN}"
max_concurrent_requests = "{$MCR}"
[default_target]
url = "http://127.0.0.1:3000/x"
"#,
    );
    let flags = Flags {
        config: Some(path),
        ..Flags::default()
    };
    let (c, _) =
        load_with_env(&flags, &env(&[("ORDERS_TOKEN", "s3cr$t;|&"), ("MCR", "7")])).unwrap();
    assert_eq!(c.cloud_url, "http://127.0.0.1:8080");
    assert_eq!(c.channels[0].token.read().unwrap().expose(), "s3cr$t;|&");
    assert_eq!(c.channels[0].max_concurrent_requests, 7);
    let err = load_with_env(&flags, &env(&[("MCR", "7")])).unwrap_err();
    assert!(
        err.0
            .errors
            .iter()
            .any(|e| e.contains("token") && e.contains("ORDERS_TOKEN")),
        "{err}"
    );
}

#[test]
fn bad_settings_are_caught_at_load_with_their_paths_r74() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "connector.json",
        r#"{
  "cloud_url": "https://relay.example.com",
  "channel": "orders",
  "token": "t",
  "max_concurrent_requests": 0,
  "some_future_key": true,
  "targets": {"stripe": {"url": "http://127.0.0.1:3000/s", "retries": 3}},
  "default_target": {"url": "ftp://x"}
}"#,
    );
    let flags = Flags {
        config: Some(path),
        ..Flags::default()
    };
    let err = load_with_env(&flags, &env(&[])).unwrap_err().0;
    let all = err.errors.join("\n");
    assert!(
        all.contains("max_concurrent_requests: must be an integer between 1 and 1000, got 0"),
        "{all}"
    );
    assert!(all.contains("targets.stripe.retries: unknown key"), "{all}");
    assert!(
        all.contains("default_target.url: must start with http:// or https://"),
        "{all}"
    );
    assert!(
        err.warnings
            .iter()
            .any(|w| w.contains("some_future_key: unknown key")),
        "{:?}",
        err.warnings
    );
    assert!(!all.contains("some_future_key"));
}

#[test]
fn channels_entries_are_strict_and_exclusive_with_top_level_channel() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "connector.json",
        r#"{
  "cloud_url": "https://relay.example.com",
  "channel": "orders",
  "max_concurrent_requests": 20,
  "default_target": {"url": "http://127.0.0.1:3000/d"},
  "channels": [
    {"channel": "payments", "token": "a", "colour": "blue"},
    {"channel": "payments", "token": "b"}
  ]
}"#,
    );
    let flags = Flags {
        config: Some(path),
        ..Flags::default()
    };
    let all = load_with_env(&flags, &env(&[("CONNECTOR_TOKEN", "x")]))
        .unwrap_err()
        .0
        .errors
        .join("\n");
    assert!(all.contains("channels[0].colour: unknown key"), "{all}");
    assert!(
        all.contains("channels[1].channel: channel \"payments\" is listed twice"),
        "{all}"
    );
    assert!(
        all.contains("channel: must not be set together with `channels`"),
        "{all}"
    );
    assert!(all.contains("env CONNECTOR_TOKEN: not allowed"), "{all}");
}

#[test]
fn channels_inherit_top_level_defaults() {
    let (c, _) = webhook_connector::config::load_from_value(serde_json::json!({
        "cloud_url": "http://relay",
        "max_concurrent_requests": 20,
        "protocol": "websocket",
        "default_target": {"url": "http://127.0.0.1:3000/d"},
        "channels": [
            {"channel": "payments", "token": "a"},
            {"channel": "orders", "token": "b", "max_concurrent_requests": "3", "protocol": "sse"}
        ]
    }))
    .unwrap();
    assert_eq!(c.channels.len(), 2);
    assert_eq!(c.channels[0].max_concurrent_requests, 20);
    assert_eq!(c.channels[0].protocol, Protocol::WebSocket);
    assert_eq!(c.channels[1].max_concurrent_requests, 3);
    assert_eq!(c.channels[1].protocol, Protocol::Sse);
    assert!(c.channels[1].default_target.is_some());
}

fn check_config(args: &[&str], envs: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_webhook-connector"));
    cmd.arg("check-config").args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("CONNECTOR_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(envs.iter().copied());
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn check_config_exits_0_for_valid_and_2_for_invalid_printing_every_error_r120() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(&dir, "good.json", BASIC);
    let (code, text) = check_config(&["--config", good.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{text}");
    assert!(!text.contains("file-token"), "secrets never printed");
    let bad = write(
        &dir,
        "bad.json",
        r#"{"cloud_url": "relay", "channel": "bad name!", "token": "t", "heartbeat_timeout": -1,
            "default_target": {"url": "http://x", "method": "BREW"}}"#,
    );
    let (code, text) = check_config(&["-c", bad.to_str().unwrap()], &[]);
    assert_eq!(code, 2, "{text}");
    for needle in [
        "cloud_url:",
        "channel:",
        "heartbeat_timeout:",
        "default_target.method:",
    ] {
        assert!(text.contains(needle), "missing {needle} in:\n{text}");
    }
    // A bad environment value names the variable.
    let (code, text) = check_config(
        &["--config", good.to_str().unwrap()],
        &[("CONNECTOR_MAX_CONCURRENT_REQUESTS", "lots")],
    );
    assert_eq!(code, 2);
    assert!(
        text.contains("env CONNECTOR_MAX_CONCURRENT_REQUESTS"),
        "{text}"
    );
    // A missing file is a configuration error too.
    let (code, _) = check_config(&["--config", "/nonexistent/connector.json"], &[]);
    assert_eq!(code, 2);
}

fn run_binary(args: &[&str]) -> (i32, String, Duration) {
    let started = std::time::Instant::now();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_webhook-connector"));
    cmd.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("CONNECTOR_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code().unwrap_or(-1), text, started.elapsed())
}

#[test]
fn start_up_failures_exit_with_status_2_at_once_r73() {
    let dir = tempfile::tempdir().unwrap();
    // A missing webhooks_config file is a load error (exit 2), never left hanging.
    let module = write(
        &dir,
        "module.json",
        r#"{"cloud_url": "http://127.0.0.1:9", "channel": "orders", "token": "t",
            "webhooks_config": "/nonexistent/webhooks.json"}"#,
    );
    let (code, text, _) = run_binary(&["--config", module.to_str().unwrap()]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("webhooks_config"), "{text}");
    // Invalid JSON.
    let broken = write(&dir, "broken.json", r#"{"cloud_url": "#);
    let (code, text, _) = run_binary(&["run", "--config", broken.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(text.contains("invalid JSON"), "{text}");
    // A health listener that cannot bind is a start-up error too.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let good = write(&dir, "good.json", BASIC);
    let (code, text, _) =
        run_binary(&["--config", good.to_str().unwrap(), "--health-listen", &addr]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("health_listen"), "{text}");
    drop(taken);
}

#[test]
fn shipped_example_configurations_pass_check_config_r121() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let (code, text) = check_config(&["--config", path.to_str().unwrap()], &[]);
        assert_eq!(code, 0, "{}: {text}", path.display());
        assert!(!text.contains("warning"), "{}: {text}", path.display());
        checked += 1;
    }
    assert!(checked >= 2);
}

#[test]
fn yaml_files_are_accepted_like_the_original() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "connector.yaml",
        "cloud_url: https://relay.example.com\nchannel: orders\ntoken: \"{$T:abc}\"\nmax_concurrent_requests: 4\ndefault_target:\n  url: http://127.0.0.1:3000/hook\n  retry_enabled: false\n",
    );
    let flags = Flags {
        config: Some(path),
        ..Flags::default()
    };
    let (c, _) = load_with_env(&flags, &env(&[])).unwrap();
    assert_eq!(c.channels[0].max_concurrent_requests, 4);
    assert_eq!(c.channels[0].token.read().unwrap().expose(), "abc");
    assert!(!c.channels[0].default_target.as_ref().unwrap().retry.enabled);
}

#[test]
fn max_message_size_defaults_to_the_relays_and_is_range_checked_r88() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "connector.json", BASIC);
    let flags = Flags {
        config: Some(path),
        ..Flags::default()
    };
    let (c, _) = load_with_env(&flags, &env(&[])).unwrap();
    assert_eq!(c.max_message_size, 10 * 1024 * 1024);
    let (c, _) = load_with_env(&flags, &env(&[("CONNECTOR_MAX_MESSAGE_SIZE", "2097152")])).unwrap();
    assert_eq!(c.max_message_size, 2 * 1024 * 1024);
    for bad in ["512", "0", "2000000000", "big"] {
        let err = load_with_env(&flags, &env(&[("CONNECTOR_MAX_MESSAGE_SIZE", bad)]))
            .err()
            .unwrap_or_else(|| panic!("max_message_size {bad} was accepted"))
            .to_string();
        assert!(
            err.contains("CONNECTOR_MAX_MESSAGE_SIZE") && err.contains("max_message_size"),
            "{bad}: {err}"
        );
    }
}
