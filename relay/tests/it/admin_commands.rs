//! The admin subcommands (`webhook-relay channels|overview|admin-health|dead-letters …`)
//! against a real relay: every channel operation, dead letters listed past one API page,
//! replayed and purged in steps, confirmation, TLS options and error causes.

use std::time::Duration;

use serde_json::Value;
use webhook_relay::admin_cli::{
    ChannelTask, Confirm, DeadLetterTask, Filter, Report, Target, Task, run,
};

use crate::support::{TestRelay, WsEvent, free_port, temp_dir, tls_settings, write_pki};

const ADMIN: &str = "admin-token-0123456789abcdef";
const WAIT: Duration = Duration::from_secs(10);

fn admin_settings() -> String {
    format!("[admin]\ntoken = \"{ADMIN}\"")
}

async fn ok(task: Task, target: &Target) -> String {
    match run(&task, target).await {
        Ok(text) => text,
        Err(e) => panic!("{task:?}: {}", Report(&e)),
    }
}

async fn json(task: Task, target: &Target) -> Value {
    let target = Target {
        json: true,
        ..target.clone()
    };
    serde_json::from_str(&ok(task, &target).await).unwrap()
}

fn ch(task: ChannelTask) -> Task {
    Task::Channels(task)
}

fn dl(task: DeadLetterTask) -> Task {
    Task::DeadLetters(task)
}

#[tokio::test]
async fn channel_commands_create_show_update_pause_stats_disconnect_and_delete() {
    let relay = TestRelay::start("admin-cli-channels", "", &admin_settings()).await;
    let target = Target::new(&relay.base, ADMIN);
    let list = ok(ch(ChannelTask::List), &target).await;
    assert_eq!(
        list.lines().next().unwrap(),
        "NAME    SOURCE  WEBHOOKS    CONNECTED  PAUSED"
    );
    assert!(
        list.contains("orders  config  other,shop  0          false"),
        "{list}"
    );

    let file = relay.dir.join("billing.json");
    std::fs::write(
        &file,
        r#"{"name":"billing","webhooks":{"invoices":{}},"ttl_seconds":600}"#,
    )
    .unwrap();
    let created = ok(ch(ChannelTask::Create { file: file.clone() }), &target).await;
    assert!(
        created.starts_with("created channel billing\ntoken (shown only now): ch_tok_"),
        "{created}"
    );
    let patch = relay.dir.join("patch.json");
    std::fs::write(&patch, r#"{"ttl_seconds":1200}"#).unwrap();
    let updated = ok(
        ch(ChannelTask::Update {
            channel: "billing".into(),
            file: patch,
        }),
        &target,
    )
    .await;
    assert_eq!(updated, "updated channel billing");
    let shown = json(
        ch(ChannelTask::Show {
            channel: "billing".into(),
        }),
        &target,
    )
    .await;
    assert_eq!(shown["config"]["ttl_seconds"], 1200);
    let text = ok(
        ch(ChannelTask::Show {
            channel: "billing".into(),
        }),
        &target,
    )
    .await;
    assert!(
        text.contains("ttl_seconds:") && text.contains("1200"),
        "{text}"
    );

    let paused = ok(
        ch(ChannelTask::Pause {
            channel: "orders".into(),
        }),
        &target,
    )
    .await;
    assert_eq!(paused, "orders: paused true");
    relay.post_ok("shop", "{}").await;
    let stats = json(
        ch(ChannelTask::Stats {
            channel: "orders".into(),
            per_webhook: false,
        }),
        &target,
    )
    .await;
    assert_eq!(stats["messages_queued"], 1);
    assert_eq!(stats["paused"], true);
    let per_webhook = ok(
        ch(ChannelTask::Stats {
            channel: "orders".into(),
            per_webhook: true,
        }),
        &target,
    )
    .await;
    assert!(per_webhook.contains("shop     1"), "{per_webhook}");
    let resumed = ok(
        ch(ChannelTask::Resume {
            channel: "orders".into(),
        }),
        &target,
    )
    .await;
    assert_eq!(resumed, "orders: paused false");

    let mut ws = relay.ws(true, &[]).await;
    ws.next_of("connected", WAIT).await;
    let connections = json(
        ch(ChannelTask::Connections {
            channel: "orders".into(),
        }),
        &target,
    )
    .await;
    let id = connections[0]["connection_id"].as_str().unwrap().to_owned();
    let table = ok(
        ch(ChannelTask::Connections {
            channel: "orders".into(),
        }),
        &target,
    )
    .await;
    assert!(
        table.starts_with("CONNECTION_ID") && table.contains(&id),
        "{table}"
    );
    let overview = ok(Task::Overview, &target).await;
    assert!(
        overview.starts_with("buffer reachable: true, 2 channels, 1 connections"),
        "{overview}"
    );
    let gone = ok(
        ch(ChannelTask::Disconnect {
            channel: "orders".into(),
            connection_id: id.clone(),
        }),
        &target,
    )
    .await;
    assert_eq!(gone, format!("disconnected {id}"));
    let health = json(Task::Health, &target).await;
    assert_eq!(health["status"], "healthy");

    // Deleting asks first; without a terminal to ask on, it refuses and keeps the channel.
    let delete = ch(ChannelTask::Delete {
        channel: "billing".into(),
        force: false,
    });
    let refused = run(
        &delete,
        &Target {
            confirm: Confirm::NoTerminal,
            ..target.clone()
        },
    )
    .await
    .unwrap_err();
    assert!(
        refused.to_string().contains("pass --yes"),
        "{}",
        Report(&refused)
    );
    assert!(ok(ch(ChannelTask::List), &target).await.contains("billing"));
    let deleted = ok(delete, &target).await;
    assert_eq!(
        deleted,
        "deleted channel billing (0 messages, 0 dead letters)"
    );
    let missing = run(
        &ch(ChannelTask::Show {
            channel: "billing".into(),
        }),
        &target,
    )
    .await
    .unwrap_err();
    assert_eq!(missing.to_string(), "404: Channel not found");
    let bad = run(
        &ch(ChannelTask::List),
        &Target {
            token: "wrong".into(),
            ..target.clone()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(bad.to_string(), "401: Invalid admin token");
}

async fn stats(target: &Target) -> Value {
    json(
        ch(ChannelTask::Stats {
            channel: "orders".into(),
            per_webhook: false,
        }),
        target,
    )
    .await
}

/// Posts `n` messages to `shop` and nacks each without retry, so `n` dead letters wait (the
/// stream stays open until the relay has settled every nack).
async fn dead_letters(relay: &TestRelay, target: &Target, n: usize) {
    for i in 0..n {
        relay.post_ok("shop", &format!("{{\"n\":{i}}}")).await;
    }
    let mut ws = relay.ws(true, &[]).await;
    ws.next_of("connected", WAIT).await;
    let mut nacked = 0;
    while nacked < n {
        match ws.next(WAIT).await {
            WsEvent::Json(m) if m["type"] == "webhook" => {
                let id = m["message_id"].as_str().unwrap();
                ws.send(&format!(
                    r#"{{"type":"nack","message_id":"{id}","retry":false}}"#
                ))
                .await;
                nacked += 1;
            }
            WsEvent::Json(_) => {}
            WsEvent::Closed(code) => panic!("stream closed: {code:?}"),
        }
    }
    let settled = crate::support::eventually(WAIT, || async {
        stats(target).await["dead_letters_queued"] == n
    })
    .await;
    assert!(settled, "{:#}", stats(target).await);
    let _ = ws.socket.close(None).await;
}

#[tokio::test]
async fn dead_letter_commands_page_past_one_api_page_and_replay_and_purge_in_steps() {
    let relay = TestRelay::start("admin-cli-dead", "", &admin_settings()).await;
    let target = Target::new(&relay.base, ADMIN);
    dead_letters(&relay, &target, 1_100).await;

    // 1050 is more than the API's page of 1000: the command follows the cursor.
    let listed = json(
        dl(DeadLetterTask::List {
            channel: "orders".into(),
            filter: Filter::default(),
            limit: Some(1_050),
            cursor: None,
        }),
        &target,
    )
    .await;
    assert_eq!(listed["count"], 1_050);
    assert_eq!(listed["total"], 1_100);
    let cursor = listed["next_cursor"].as_str().unwrap().to_owned();
    let rest = ok(
        dl(DeadLetterTask::List {
            channel: "orders".into(),
            filter: Filter {
                webhook: Some("shop".into()),
                reason: Some("rejected".into()),
            },
            limit: Some(500),
            cursor: Some(cursor),
        }),
        &target,
    )
    .await;
    assert!(rest.ends_with("50 of 1100 shown"), "{rest}");
    let one = listed["messages"][0]["message_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let shown = ok(
        dl(DeadLetterTask::Show {
            channel: "orders".into(),
            message_id: one.clone(),
        }),
        &target,
    )
    .await;
    assert!(
        shown.contains(&one) && shown.contains("rejected") && shown.contains("{\"n\":1099}"),
        "{shown}"
    );

    // Replay more than one API step (1000), then purge what is left in filtered steps.
    let replayed = ok(
        dl(DeadLetterTask::Replay {
            channel: "orders".into(),
            message_id: None,
            filter: Filter::default(),
            limit: Some(1_020),
        }),
        &target,
    )
    .await;
    assert_eq!(replayed, "replayed 1020, remaining 80");
    let after = stats(&target).await;
    assert_eq!(after["messages_queued"], 1_020);
    assert_eq!(after["dead_letters_queued"], 80);
    let purge_all = dl(DeadLetterTask::Purge {
        channel: "orders".into(),
        message_id: None,
        filter: Filter::default(),
        before: None,
    });
    let refused = run(
        &purge_all,
        &Target {
            confirm: Confirm::NoTerminal,
            ..target.clone()
        },
    )
    .await
    .unwrap_err();
    assert!(
        refused
            .to_string()
            .starts_with("Purge all 80 dead letters of channel orders?"),
        "{}",
        Report(&refused)
    );
    assert_eq!(stats(&target).await["dead_letters_queued"], 80);
    let purged = ok(
        dl(DeadLetterTask::Purge {
            channel: "orders".into(),
            message_id: None,
            filter: Filter {
                webhook: None,
                reason: Some("rejected".into()),
            },
            before: None,
        }),
        &target,
    )
    .await;
    assert_eq!(purged, "purged 80");
    assert_eq!(stats(&target).await["dead_letters_queued"], 0);
}

#[tokio::test]
async fn tls_options_and_errors_with_their_causes() {
    let dir = temp_dir("admin-cli-tls");
    let ca = write_pki(&dir);
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca).unwrap();
    let relay =
        TestRelay::start_with_server(dir.clone(), &tls_settings(&dir), "", &admin_settings()).await;
    let plain = Target::new(&format!("https://{}", relay.addr), ADMIN);
    let untrusted = run(&Task::Overview, &plain).await.unwrap_err();
    let report = Report(&untrusted).to_string();
    assert!(
        report.starts_with("cannot reach the relay: GET https://"),
        "{report}"
    );
    assert!(
        report.contains("\n  caused by: ") && report.to_lowercase().contains("certificate"),
        "{report}"
    );
    let trusted = Target {
        cacert: Some(ca_file.clone()),
        ..plain.clone()
    };
    let overview = ok(Task::Overview, &trusted).await;
    assert!(overview.starts_with("buffer reachable: true"), "{overview}");
    let insecure = Target {
        insecure: true,
        ..plain.clone()
    };
    assert_eq!(json(Task::Health, &insecure).await["status"], "healthy");
    let not_pem = Target {
        cacert: Some(dir.join("relay.toml")),
        ..plain.clone()
    };
    let e = run(&Task::Overview, &not_pem).await.unwrap_err();
    assert!(e.to_string().contains("--cacert"), "{}", Report(&e));

    let closed = Target::new(&format!("http://127.0.0.1:{}", free_port()), ADMIN);
    let e = run(&Task::Overview, &closed).await.unwrap_err();
    let report = Report(&e).to_string();
    assert!(
        report.contains("caused by: ") && report.contains("Connection refused"),
        "{report}"
    );
}

#[tokio::test]
async fn the_binary_refuses_to_purge_without_a_terminal_or_yes() {
    let relay = TestRelay::start("admin-cli-binary", "", &admin_settings()).await;
    let base = relay.base.clone();
    let command = |extra: &'static [&'static str]| {
        let base = base.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_webhook-relay"))
                .args(["dead-letters", "purge", "orders", "--url", &base])
                .args(extra)
                .env("WEBHOOK_CONNECT_ADMIN_TOKEN", ADMIN)
                .env_remove("WEBHOOK_RELAY_URL")
                .stdin(std::process::Stdio::null())
                .output()
                .unwrap()
        })
    };
    let refused = command(&[]).await.unwrap();
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.starts_with("error: Purge all 0 dead letters of channel orders?")
            && stderr.contains("pass --yes"),
        "{stderr}"
    );
    let done = command(&["--yes", "--json"]).await.unwrap();
    assert!(done.status.success(), "{done:?}");
    let body: Value = serde_json::from_slice(&done.stdout).unwrap();
    assert_eq!(body["purged"], 0);
}
