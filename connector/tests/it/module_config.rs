//! Module-mode configuration (`docs/reference/config-formats.md` §4.7, `docs/reference/module-contract.md` §2.5, §5.1): every problem
//! reported with its file and path, substitution in both files, `check-config` exit statuses
//!

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;
use webhook_connector::config::Flags;
use webhook_connector::config::load::load_with_env;

fn write(dir: &Path, name: &str, value: &serde_json::Value) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, value.to_string()).unwrap();
    p
}

/// Writes a connector config using `webhooks` (and `connections`) and loads it.
fn load(
    webhooks: serde_json::Value,
    connections: Option<serde_json::Value>,
    env: &[(&str, &str)],
) -> Result<(webhook_connector::ConnectorConfig, Vec<String>), Vec<String>> {
    let dir = tempfile::tempdir().unwrap();
    let w = write(dir.path(), "webhooks.json", &webhooks);
    let mut config = json!({
        "cloud_url": "http://127.0.0.1:1", "channel": "orders", "token": "t",
        "webhooks_config": w.to_str().unwrap()
    });
    if let Some(c) = connections {
        let c = write(dir.path(), "connections.json", &c);
        config["connections_config"] = json!(c.to_str().unwrap());
    }
    let path = write(dir.path(), "connector.json", &config);
    let flags = Flags {
        config: Some(path),
        ..Flags::default()
    };
    let vars: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let lookup = move |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    match load_with_env(&flags, &lookup) {
        Ok((c, p)) => Ok((c, p.warnings)),
        Err(e) => Err(e.0.errors),
    }
}

fn has(errors: &[String], needle: &str) -> bool {
    errors.iter().any(|e| e.contains(needle))
}

#[test]
fn a_valid_module_mode_loads_with_substitution_in_both_files_r72() {
    let (config, warnings) = load(
        json!({"orders": {"module": "log", "connection": "{$CONN}", "retry": {"enabled": true},
                          "hmac": {"secret": "s"}, "mystery": 1},
               "default": {"chain": ["log", {"module": "save_to_disk", "module-config": {"base_dir": "/tmp"}}],
                           "chain-config": {"execution": "parallel", "timeout": 5}}}),
        Some(json!({"main": {"type": "redis", "host": "{$HOST:127.0.0.1}"}})),
        &[("CONN", "main")],
    )
    .unwrap();
    let modules = config.channels[0].modules.as_ref().unwrap();
    let orders = &modules.entries["orders"].items[0];
    assert_eq!(orders.connection_name.as_deref(), Some("main"));
    assert_eq!(orders.connection.as_ref().unwrap()["host"], "127.0.0.1");
    assert!(orders.retry.enabled, "webhook-level retry honoured (R-109)");
    let default = &modules.entries["default"];
    assert_eq!(default.items.len(), 2);
    assert!(default.chain.as_ref().unwrap().parallel);
    assert!(
        has(&warnings, "orders.mystery"),
        "unknown keys warn: {warnings:?}"
    );
    assert!(!has(&warnings, "hmac"), "relay keys are ignored silently");
}

#[test]
fn module_problems_name_the_file_and_path() {
    let errors = load(
        json!({
            "a": {"module": "kafak"},
            "b": {"module": "webhook_connect"},
            "c": {"module": "log", "connection": "nope"},
            "d": {"chain": ["log", {"module": "log", "extra": 1}], "chain-config": {"foo": 1}},
            "e": {"chain": []},
            "f": {"module": "http_webhook", "module-config": {"url": "http://169.254.169.254/"}},
            "g": {"module": "save_to_disk", "module-config": {"path": "../../etc"}},
            "h": {"module": "kafka"},
            "i": {"chain": [{"module": "log", "topic": "t", "module-config": {"topic": "u"}}]}
        }),
        None,
        &[],
    )
    .unwrap_err();
    for needle in [
        "webhooks.json: a.module: unknown module 'kafak'; valid modules: activemq, aws_sqs",
        "webhooks.json: b.module: module 'webhook_connect' is only available on the relay",
        "webhooks.json: c.connection: unknown connection \"nope\"",
        "webhooks.json: d.chain[1].extra: unknown key",
        "webhooks.json: d.chain-config: unknown field 'foo' (allowed: continue_on_error, execution, timeout)",
        "webhooks.json: e.chain: must list 1 to 20 items",
        "webhooks.json: f.module-config.url:",
        "webhooks.json: g.module-config.path: must not contain '..'",
        "webhooks.json: i.chain[0].topic: also set in module-config.topic",
        // Built with the feature, `kafka` is a real module that needs its topic.
        #[cfg(feature = "kafka")]
        "webhooks.json: h.module-config.topic: missing field",
        #[cfg(not(feature = "kafka"))]
        "webhooks.json: h.module: module 'kafka' requires the 'kafka' feature; this build does not include it",
    ] {
        assert!(has(&errors, needle), "missing {needle:?} in {errors:#?}");
    }
}

/// `docs/reference/module-contract.md` §2.5 and §3.12: a build without the `clickhouse` feature refuses the module
/// naming the feature; a build with it refuses the native-protocol port with the hint.
#[test]
fn clickhouse_needs_its_feature_and_the_http_port() {
    let errors = load(
        json!({"ch": {"module": "clickhouse", "connection": "c"}}),
        Some(json!({"c": {"type": "clickhouse", "host": "127.0.0.1", "port": 9000}})),
        &[],
    )
    .unwrap_err();
    let needle = if cfg!(feature = "clickhouse") {
        "connections.json: c.port: 9000 is ClickHouse's native protocol port"
    } else {
        "webhooks.json: ch.module: module 'clickhouse' requires the 'clickhouse' feature; \
         this build does not include it"
    };
    assert!(has(&errors, needle), "missing {needle:?} in {errors:#?}");
    if cfg!(feature = "clickhouse") {
        assert!(
            has(&errors, "use the HTTP port, usually 8123"),
            "{errors:#?}"
        );
    }
}

/// STYLE.md §4, `docs/reference/module-contract.md` §2.5: a module whose cargo feature this build leaves out is a load
/// error naming the module and the feature; a build with the feature reads the entry instead.
#[test]
fn a_module_built_without_its_cargo_feature_is_a_load_error_naming_the_feature() {
    let cases = [
        ("postgresql", "postgresql", cfg!(feature = "postgresql")),
        ("mysql", "mysql", cfg!(feature = "mysql")),
        ("mqtt", "mqtt", cfg!(feature = "mqtt")),
        ("nats", "nats", cfg!(feature = "nats")),
        ("rabbitmq", "rabbitmq", cfg!(feature = "rabbitmq")),
        ("redis_publish", "redis", cfg!(feature = "redis")),
        ("redis_rq", "redis", cfg!(feature = "redis")),
    ];
    for (module, feature, built) in cases {
        let result = load(
            json!({"w": {"module": module, "connection": "c"}}),
            Some(json!({"c": {"type": module, "host": "127.0.0.1"}})),
            &[],
        );
        let needle = format!(
            "webhooks.json: w.module: module '{module}' requires the '{feature}' feature; \
             this build does not include it"
        );
        match result {
            Err(errors) if !built => assert!(has(&errors, &needle), "{module}: {errors:#?}"),
            Ok(_) if !built => panic!("{module} loaded in a build without '{feature}'"),
            Err(errors) => assert!(
                !has(&errors, "this build does not include it"),
                "{module}: {errors:#?}"
            ),
            Ok(_) => {}
        }
    }
}

#[test]
fn a_missing_variable_or_file_is_a_load_error_r73() {
    let errors = load(
        json!({"a": {"module": "log", "module-config": {"pretty_print": "{$PRETTY}"}}}),
        None,
        &[],
    )
    .unwrap_err();
    assert!(
        has(&errors, "webhooks.json: a.module-config.pretty_print") && has(&errors, "PRETTY"),
        "{errors:?}"
    );
    let errors = load(json!([1]), None, &[]).unwrap_err();
    assert!(has(
        &errors,
        "webhooks.json: the top level must be an object"
    ));
}

#[test]
fn http_targets_and_module_mode_are_exclusive() {
    let dir = tempfile::tempdir().unwrap();
    let w = write(
        dir.path(),
        "webhooks.json",
        &json!({"a": {"module": "log"}}),
    );
    let doc = json!({"cloud_url": "http://x", "channel": "c", "token": "t",
                     "webhooks_config": w.to_str().unwrap(),
                     "default_target": {"url": "http://127.0.0.1:1/"}});
    let err = webhook_connector::config::load_from_value(doc).unwrap_err();
    assert!(has(&err.0.errors, "exactly one delivery mode"), "{err}");
}

#[test]
fn check_config_exits_2_and_prints_module_errors_r120() {
    let dir = tempfile::tempdir().unwrap();
    let w = write(dir.path(), "hooks.json", &json!({"a": {"module": "kafak"}}));
    let c = write(
        dir.path(),
        "connector.json",
        &json!({"cloud_url": "http://x", "channel": "c", "token": "t", "webhooks_config": w.to_str().unwrap()}),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_webhook-connector"))
        .args(["check-config", "--config", c.to_str().unwrap()])
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("hooks.json: a.module: unknown module 'kafak'"),
        "{stderr}"
    );

    let w = write(
        dir.path(),
        "hooks.json",
        &json!({"a": {"module": "save_to_disk", "module-config": {"base_dir": dir.path().to_str().unwrap()}}}),
    );
    assert!(w.exists());
    let out = Command::new(env!("CARGO_BIN_EXE_webhook-connector"))
        .args(["check-config", "--config", c.to_str().unwrap()])
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
