//! The `webhook-relay` command line: the admin subcommands show only their own options, and the
//! server options work before or after `run`, `check-config` and `print-config`.

use std::path::Path;
use std::process::{Command, Output};

fn relay(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_webhook-relay"))
        .args(args)
        .env_remove("WEBHOOK_RELAY_CONFIG")
        .env_remove("WEBHOOK_CONNECT_ADMIN_TOKEN")
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

const SERVER_OPTIONS: [&str; 7] = [
    "--config",
    "--listen",
    "--admin-listen",
    "--buffer",
    "--webhooks-config",
    "--admin-token-file",
    "--log-format",
];

#[test]
fn admin_subcommands_list_only_their_own_options() {
    for args in [
        ["channels", "list", "--help"].as_slice(),
        ["channels", "rotate", "--help"].as_slice(),
        ["dead-letters", "replay", "--help"].as_slice(),
    ] {
        let out = relay(args);
        assert!(out.status.success(), "{args:?}: {out:?}");
        let help = stdout(&out);
        assert!(help.contains("--url"), "{args:?}: {help}");
        assert!(help.contains("--token-file"), "{args:?}: {help}");
        for option in SERVER_OPTIONS {
            assert!(!help.contains(option), "{args:?} lists {option}: {help}");
        }
    }
    let run_help = stdout(&relay(&["run", "--help"]));
    for option in SERVER_OPTIONS {
        assert!(run_help.contains(option), "run lacks {option}: {run_help}");
    }
}

fn write_config(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn config_flag_works_before_or_after_the_subcommand() {
    let dir = crate::support::temp_dir("cli");
    let store = dir.join("relay.db").display().to_string();
    let good = write_config(
        &dir,
        "good.toml",
        &format!(
            "[buffer.embedded]\npath = \"{store}\"\n\n[[channels]]\nname = \"orders\"\n\
             token = \"orders-token-0123456789\"\n\n[channels.webhooks.shop]\n"
        ),
    );
    let bad = write_config(&dir, "bad.toml", "[server]\nmax_body_bytes = \"lots\"\n");
    for args in [
        ["--config", good.as_str(), "check-config"],
        ["check-config", "--config", good.as_str()],
    ] {
        let out = relay(&args);
        assert!(out.status.success(), "{args:?}: {out:?}");
        assert!(
            stdout(&out).contains("configuration is valid: 1 channel(s)"),
            "{args:?}: {out:?}"
        );
    }
    // The file named before the subcommand is the one checked: a broken one fails.
    for args in [
        ["--config", bad.as_str(), "check-config"],
        ["check-config", "--config", bad.as_str()],
    ] {
        let out = relay(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
    }
    // Given on both sides, the subcommand's value wins.
    let out = relay(&[
        "--config",
        bad.as_str(),
        "check-config",
        "--config",
        good.as_str(),
    ]);
    assert!(out.status.success(), "{out:?}");
    // Server options mean nothing to an admin subcommand: refused, not silently dropped.
    let out = relay(&["--config", good.as_str(), "channels", "list"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not to the admin subcommands"));
    std::fs::remove_dir_all(&dir).unwrap();
}
