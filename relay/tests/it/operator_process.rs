//! The relay binary as an operator runs it: logs in a file carry no colour codes, SIGTERM ends
//! the process whatever became of its stdout and stderr, `health` probes a running relay
//! without a shell or curl, and a broker that is down at start-up is named in the log.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::support::{free_port, temp_dir};

fn relay_command(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_webhook-relay"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .current_dir(dir);
    cmd
}

/// A configuration with one channel on the embedded store, listening on `port`.
fn write_config(dir: &Path, port: u16, extra: &str) -> PathBuf {
    let path = dir.join("relay.toml");
    let store = dir.join("relay.db");
    let state = dir.join("state.db");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nshutdown_grace_seconds = 1\n\n\
             [buffer.embedded]\npath = \"{}\"\n\n[state]\npath = \"{}\"\n\n{extra}\n\n\
             [[channels]]\nname = \"orders\"\ntoken = \"orders-token-0123456789\"\n\n\
             [channels.webhooks.shop]\n",
            store.display(),
            state.display()
        ),
    )
    .unwrap();
    path
}

/// `webhook-relay health ARGS`: exit status, stdout, stderr.
fn health(dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = relay_command(dir)
        .arg("health")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Waits until `health --config` succeeds (the relay is up).
fn wait_until_healthy(dir: &Path, config: &Path, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let config = config.display().to_string();
    loop {
        if health(dir, &["--config", &config]).0 == Some(0) {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the relay exited before it was up: {status}");
        }
        assert!(Instant::now() < deadline, "the relay never became healthy");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts `webhook-relay run --config CONFIG` with these outputs; with `healthy`, waits until it
/// is up.
fn start(
    dir: &Path,
    config: &Path,
    stdout: impl Into<Stdio>,
    stderr: impl Into<Stdio>,
    healthy: bool,
) -> Child {
    let mut child = relay_command(dir)
        .args(["run", "--config"])
        .arg(config)
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .unwrap();
    if healthy {
        wait_until_healthy(dir, config, &mut child);
    }
    child
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// The exit status within `limit`, or `None` (the process is then killed).
fn exit_within(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

#[test]
fn text_logs_written_to_a_file_carry_no_colour_codes() {
    let dir = temp_dir("log-file");
    let port = free_port();
    let config = write_config(&dir, port, "");
    let log = std::fs::File::create(dir.join("relay.log")).unwrap();
    let mut child = start(&dir, &config, Stdio::null(), log, true);
    sigterm(&child);
    let status = exit_within(&mut child, Duration::from_secs(30));
    let text = std::fs::read_to_string(dir.join("relay.log")).unwrap();
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{text}");
    assert!(text.contains("INFO"), "no log lines: {text:?}");
    assert!(
        !text.contains('\u{1b}'),
        "colour codes in the log file: {text:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sigterm_ends_the_relay_when_stdout_and_stderr_are_closed_pipes() {
    let dir = temp_dir("closed-pipes");
    let port = free_port();
    let config = write_config(&dir, port, "");
    let mut child = start(&dir, &config, Stdio::piped(), Stdio::piped(), true);
    // The reader goes away (`webhook-relay 2>&1 | head -1` after its line): every later write
    // to stdout or stderr fails with a broken pipe.
    drop(child.stdout.take());
    drop(child.stderr.take());
    sigterm(&child);
    let status = exit_within(&mut child, Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "after SIGTERM with closed pipes: {status:?} (None: still running after 30 s)"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn health_subcommand_probes_the_running_relay_and_fails_when_it_is_gone() {
    let dir = temp_dir("health");
    let port = free_port();
    let config = write_config(&dir, port, "");
    let config_arg = config.display().to_string();
    let mut child = start(&dir, &config, Stdio::null(), Stdio::null(), true);

    let (code, out, err) = health(&dir, &["--config", &config_arg]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains(&format!("http://127.0.0.1:{port}/healthz: 200")),
        "{out}"
    );
    let (code, out, err) = health(&dir, &["--ready", "--config", &config_arg]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("/readyz: 200"), "{out}");
    // The configuration may also come from the environment, as in a container.
    let out = relay_command(&dir)
        .arg("health")
        .env("WEBHOOK_RELAY_CONFIG", &config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    sigterm(&child);
    assert!(exit_within(&mut child, Duration::from_secs(30)).is_some_and(|s| s.success()));
    let base = format!("http://127.0.0.1:{port}");
    let (code, _, err) = health(&dir, &["--url", &base, "--timeout-seconds", "2"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(&format!("unhealthy: {base}/healthz")), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn health_subcommand_speaks_tls_to_a_tls_listener() {
    let dir = temp_dir("health-tls");
    let cert = rcgen::generate_simple_self_signed(vec!["relay.example".to_owned()]).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), cert.key_pair.serialize_pem()).unwrap();
    let port = free_port();
    let config = write_config(&dir, port, "");
    let text = std::fs::read_to_string(&config).unwrap().replacen(
        "[server]\n",
        &format!(
            "[server]\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
            dir.join("cert.pem").display(),
            dir.join("key.pem").display()
        ),
        1,
    );
    std::fs::write(&config, text).unwrap();
    let config_arg = config.display().to_string();
    let mut child = start(&dir, &config, Stdio::null(), Stdio::null(), true);
    let (code, out, err) = health(&dir, &["--config", &config_arg]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.starts_with(&format!("https://127.0.0.1:{port}/healthz: 200")),
        "{out}"
    );
    sigterm(&child);
    assert!(exit_within(&mut child, Duration::from_secs(30)).is_some());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_redis_buffer_down_at_start_up_is_named_in_the_log() {
    let dir = temp_dir("redis-down");
    let port = free_port();
    let dead = free_port();
    let config = write_config(
        &dir,
        port,
        &format!(
            "[buffer]\nbackend = \"redis\"\n\n[buffer.redis]\n\
             url = \"redis://user:hunter2@127.0.0.1:{dead}/0\"\noperation_timeout_ms = 500\n"
        ),
    );
    // The state store follows the buffer onto (the same, unreachable) Redis unless embedded.
    let text = std::fs::read_to_string(&config).unwrap().replacen(
        "[state]\n",
        "[state]\nbackend = \"embedded\"\n",
        1,
    );
    std::fs::write(&config, text).unwrap();
    let log = std::fs::File::create(dir.join("relay.log")).unwrap();
    let mut child = start(&dir, &config, Stdio::null(), log, false);
    let deadline = Instant::now() + Duration::from_secs(30);
    let address = format!("127.0.0.1:{dead}");
    let mut text = String::new();
    while Instant::now() < deadline {
        text = std::fs::read_to_string(dir.join("relay.log")).unwrap();
        if text.contains("unreachable") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    sigterm(&child);
    let _ = exit_within(&mut child, Duration::from_secs(30));
    let line = text
        .lines()
        .find(|l| l.contains("unreachable"))
        .unwrap_or_else(|| panic!("no unreachable line: {text}"));
    assert!(line.contains(&address), "the address is missing: {line}");
    assert!(!line.contains("hunter2"), "the password leaked: {line}");
    let _ = std::fs::remove_dir_all(&dir);
}
