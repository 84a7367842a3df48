//! The connector binary as an operator runs it (issue 23): `health` probes the running
//! process's health listener without a shell or curl, its file logs carry no colour codes, and
//! SIGTERM ends it even after whoever read its stdout and stderr went away.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A loopback port that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A configuration whose relay is not there (so the connector keeps logging failed connects)
/// and whose health listener is on `health`.
fn write_config(dir: &Path, health: u16) -> String {
    let relay = free_port();
    let path = dir.join("connector.json");
    std::fs::write(
        &path,
        format!(
            r#"{{"cloud_url": "http://127.0.0.1:{relay}", "channel": "orders",
                "token": "orders-token", "protocol": "sse", "reconnect_delay": 0.2,
                "max_reconnect_delay": 0.5, "health_listen": "0.0.0.0:{health}",
                "default_target": {{"url": "http://127.0.0.1:9/hook"}}}}"#
        ),
    )
    .unwrap();
    path.display().to_string()
}

fn connector() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_webhook-connector"));
    for (k, _) in std::env::vars() {
        if k.starts_with("CONNECTOR_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// `webhook-connector health ARGS`: (exit status, stdout + stderr).
fn health(args: &[&str]) -> (Option<i32>, String) {
    let out = connector().arg("health").args(args).output().unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Polls `health --config` until the listener answers.
fn wait_for_listener(config: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while health(&["--config", config]).0 != Some(0) {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the connector exited early"
        );
        assert!(
            Instant::now() < deadline,
            "the health listener never came up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sends SIGTERM and returns the exit code if the process ended within 30 s (else kills it).
fn terminate(child: &mut Child) -> Option<i32> {
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status.code().unwrap_or(-1));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs the connector with stderr into a file for a second after its health listener is up
/// (failed connects get logged meanwhile), stops it with SIGTERM and returns the log.
fn run_with_log_file(dir: &Path, config: &str) -> String {
    let log_path = dir.join("connector.log");
    let mut child = connector()
        .args(["--config", config])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    wait_for_listener(config, &mut child);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(terminate(&mut child), Some(0));
    std::fs::read_to_string(&log_path).unwrap()
}

#[test]
fn health_subcommand_probes_the_running_connector() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), port);
    let mut child = connector()
        .args(["run", "--config", &config])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_listener(&config, &mut child);

    // Alive (listener bound to every interface, probed on loopback) …
    let (code, out) = health(&["--config", &config]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(&format!("http://127.0.0.1:{port}/healthz: 200")),
        "{out}"
    );
    // … but not ready: its relay is not there.
    let (code, out) = health(&["--ready", "--config", &config]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("/readyz: 503"), "{out}");

    assert_eq!(terminate(&mut child), Some(0));
    let (code, out) = health(&["--url", &format!("http://127.0.0.1:{port}")]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("unhealthy"), "{out}");
}

#[test]
fn health_subcommand_without_a_health_listener_says_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("connector.json");
    std::fs::write(
        &path,
        r#"{"cloud_url": "http://127.0.0.1:9", "channel": "orders", "token": "t",
            "default_target": {"url": "http://127.0.0.1:9/hook"}}"#,
    )
    .unwrap();
    let (code, out) = health(&["--config", path.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("health_listen is not set"), "{out}");
}

#[test]
fn file_logs_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), free_port());
    let log = run_with_log_file(dir.path(), &config);
    assert!(log.contains("WARN"), "{log}");
    assert!(!log.contains('\u{1b}'), "colour codes in a file: {log:?}");
}

#[test]
fn sigterm_ends_the_connector_when_stdout_and_stderr_are_closed_pipes() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), free_port());
    let mut child = connector()
        .args(["--config", &config])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_listener(&config, &mut child);
    drop(child.stdout.take());
    drop(child.stderr.take());
    // Let it log into the broken pipes (failed connects every half second).
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        terminate(&mut child),
        Some(0),
        "None: still running 30 s after SIGTERM"
    );
}

#[test]
fn connection_errors_name_the_relay_they_tried() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), free_port());
    let text = std::fs::read_to_string(&config).unwrap();
    let relay = text
        .split("\"cloud_url\": \"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    let log = run_with_log_file(dir.path(), &config);
    let failed: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Connect failed"))
        .collect();
    assert!(!failed.is_empty(), "{log}");
    for line in failed {
        assert!(line.contains(&relay), "no relay address: {line}");
    }
}
