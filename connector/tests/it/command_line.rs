//! The real binary's command line (issue 17, items 6 and 7): global options before or after the
//! subcommand, `check-config` and `run` refusing the same problems in one pass, and
//! `print-config` masking every secret (R-120, R-126).

use std::path::{Path, PathBuf};
use std::process::Command;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Runs the binary with `args` and no `CONNECTOR_*` variable: (status, stdout, stderr).
fn connector(args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_webhook-connector"));
    cmd.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("CONNECTOR_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const VALID: &str = r#"{"cloud_url": "https://relay.example.com", "channel": "orders",
    "token": "t", "default_target": {"url": "http://127.0.0.1:3000/hook"}}"#;

#[test]
fn check_config_honours_config_before_or_after_the_subcommand_r120() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(dir.path(), "good.json", VALID);
    let bad = write(
        dir.path(),
        "bad.json",
        r#"{"cloud_url": "relay", "channel": "orders", "token": "t",
            "default_target": {"url": "http://127.0.0.1:3000/hook"}}"#,
    );
    let (good, bad) = (good.to_str().unwrap(), bad.to_str().unwrap());
    for args in [
        ["--config", good, "check-config"],
        ["check-config", "--config", good],
        ["-c", good, "check-config"],
    ] {
        let (code, out, err) = connector(&args);
        assert_eq!(code, 0, "{args:?}: {out}{err}");
        assert!(out.contains("configuration is valid"), "{args:?}: {out}");
    }
    for args in [
        ["--config", bad, "check-config"],
        ["check-config", "--config", bad],
    ] {
        let (code, out, err) = connector(&args);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(
            err.contains("cloud_url: must start with"),
            "{args:?}: {err}"
        );
    }
    // The subcommand's own value wins over the one given before it.
    let (code, _, err) = connector(&["--config", good, "check-config", "--config", bad]);
    assert_eq!(code, 2, "{err}");
    // Other options too, before `run` (refused at load, so it exits at once).
    let (code, _, err) = connector(&["--config", good, "--protocol", "carrier-pigeon", "run"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--protocol: protocol: must be"), "{err}");
    let (code, _, err) = connector(&["--config", bad, "run"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cloud_url: must start with"), "{err}");
}

#[test]
fn check_config_and_run_refuse_the_same_problems_in_one_pass_r120() {
    let dir = tempfile::tempdir().unwrap();
    let ca = write(dir.path(), "ca.pem", "this is not a certificate\n");
    let config = write(
        dir.path(),
        "connector.json",
        &serde_json::json!({
            "cloud_url": "https://relay.example.com", "channel": "orders", "token": "t",
            "default_target": {"url": "http://127.0.0.1:3000/hook"},
            "heartbeat_timeout": -1,
            "ca_cert_path": ca.to_str().unwrap(),
            "proxy": "http://proxy host:3128",
            "completion_record": {"path": dir.path().join("missing/record").to_str().unwrap()},
        })
        .to_string(),
    );
    let config = config.to_str().unwrap();
    let needles = [
        "heartbeat_timeout: must be > 0",
        "ca_cert_path: no certificate in",
        "proxy: not a usable proxy URL",
        "completion_record.path: directory",
    ];
    let (code, out, check) = connector(&["check-config", "--config", config]);
    assert_eq!(code, 2, "{out}{check}");
    let (code, _, run) = connector(&["--config", config]);
    assert_eq!(code, 2, "{run}");
    for needle in needles {
        assert!(
            check.contains(needle),
            "check-config misses {needle:?}:\n{check}"
        );
        assert!(run.contains(needle), "run misses {needle:?}:\n{run}");
    }
    assert_eq!(check, run, "check-config and run report the same problems");
}

#[cfg(all(feature = "redis", feature = "rabbitmq"))]
#[test]
fn print_config_masks_every_secret_and_shows_the_rest_r126() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = write(dir.path(), "payments.token", "SECRET-token-file-content\n");
    let webhooks = write(
        dir.path(),
        "webhooks.json",
        &serde_json::json!({
            "orders": {"module": "rabbitmq", "connection": "mq",
                       "module-config": {"queue_name": "orders-queue"}},
            "cache": {"module": "redis_publish", "connection": "cache",
                      "module-config": {"channel": "events-channel",
                                        "signing_key": "SECRET-module-key"}},
        })
        .to_string(),
    );
    let connections = write(
        dir.path(),
        "connections.json",
        &serde_json::json!({
            "mq": {"type": "rabbitmq", "host": "mq.internal", "port": 5672,
                   "user": "mquser", "pass": "SECRET-mq-pass", "vhost": "shop"},
            "cache": {"type": "redis", "url": "redis://cacheuser:SECRET-redis-pw@127.0.0.1:6379/0"},
        })
        .to_string(),
    );
    let config = write(
        dir.path(),
        "connector.json",
        &serde_json::json!({
            "cloud_url": "https://relayuser:SECRET-cloud-pw@relay.example.com",
            "proxy": "http://proxyuser:SECRET-proxy-pw@proxy.internal:3128",
            "no_proxy": ["127.0.0.1"],
            "channels": [
                {"channel": "orders", "token": "SECRET-orders-token",
                 "default_target": {"url": "http://127.0.0.1:3000/hook",
                                    "headers": {"Authorization": "Bearer SECRET-bearer",
                                                "X-Local-Key": "SECRET-local-key",
                                                "X-Team": "blue-team"}}},
                {"channel": "payments", "token_file": token_file.to_str().unwrap(),
                 "webhooks_config": webhooks.to_str().unwrap(),
                 "connections_config": connections.to_str().unwrap()},
            ],
        })
        .to_string(),
    );
    let config = config.to_str().unwrap();
    // Before and after the subcommand alike.
    for args in [
        vec!["print-config", "--config", config],
        vec!["--config", config, "print-config"],
    ] {
        let (code, out, err) = connector(&args);
        assert_eq!(code, 0, "{args:?}: {out}{err}");
        for secret in [
            "SECRET-cloud-pw",
            "SECRET-proxy-pw",
            "SECRET-orders-token",
            "SECRET-bearer",
            "SECRET-local-key",
            "SECRET-token-file-content",
            "SECRET-mq-pass",
            "SECRET-redis-pw",
            "SECRET-module-key",
        ] {
            assert!(!out.contains(secret), "{secret} printed:\n{out}");
            assert!(!err.contains(secret), "{secret} printed:\n{err}");
        }
        let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
        let c = &doc["config"];
        assert_eq!(c["cloud_url"], "https://relayuser:***@relay.example.com");
        assert_eq!(c["proxy"], "http://proxyuser:***@proxy.internal:3128");
        assert_eq!(c["no_proxy"][0], "127.0.0.1");
        let orders = &c["channels"][0];
        assert_eq!(orders["channel"], "orders");
        assert_eq!(orders["token"], "***");
        let target = &orders["default_target"];
        assert_eq!(target["url"], "http://127.0.0.1:3000/hook");
        assert_eq!(target["headers"]["Authorization"], "***");
        assert_eq!(target["headers"]["X-Team"], "blue-team");
        let payments = &c["channels"][1];
        assert_eq!(payments["token_file"], token_file.to_str().unwrap());
        let modules = &doc["module_mode"]["payments"];
        let mq = &modules["connections"]["mq"];
        assert_eq!(mq["host"], "mq.internal");
        assert_eq!(mq["user"], "mquser");
        assert_eq!(mq["pass"], "***");
        assert_eq!(mq["vhost"], "shop");
        assert_eq!(
            modules["connections"]["cache"]["url"],
            "redis://cacheuser:***@127.0.0.1:6379/0"
        );
        let cache = &modules["webhooks"]["cache"]["module"][0];
        assert_eq!(cache["module"], "redis_publish");
        assert_eq!(cache["connection"], "cache");
        assert_eq!(cache["module-config"]["channel"], "events-channel");
        assert_eq!(
            modules["webhooks"]["orders"]["module"][0]["module-config"]["queue_name"],
            "orders-queue"
        );
    }
    // An invalid configuration prints nothing but its problems, exit 2.
    let bad = write(
        dir.path(),
        "bad.json",
        r#"{"cloud_url": "relay", "token": "SECRET-x"}"#,
    );
    let (code, out, err) = connector(&["print-config", "--config", bad.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.is_empty(), "{out}");
    assert!(!err.contains("SECRET-x"), "{err}");
}
