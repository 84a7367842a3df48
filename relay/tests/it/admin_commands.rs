//! The `channels` and `dead-letters` subcommands' library against a running relay.

use std::time::Duration;

use webhook_relay::admin_cli::{Target, Task, run};

use crate::support::TestRelay;

const ADMIN: &str = "admin-token-0123456789abcdef";

#[tokio::test]
async fn admin_commands_list_rotate_and_handle_dead_letters() {
    let relay = TestRelay::start("admin-cli", "", &format!("[admin]\ntoken = \"{ADMIN}\"")).await;
    let target = Target {
        base_url: relay.base.clone(),
        token: ADMIN.into(),
        json: false,
    };
    let list = run(&Task::ChannelsList, &target).await.unwrap();
    assert_eq!(
        list.lines().next().unwrap(),
        "NAME    SOURCE  WEBHOOKS    CONNECTED  PAUSED"
    );
    assert!(
        list.contains("orders  config  other,shop  0          false"),
        "{list}"
    );
    let rotated = run(
        &Task::ChannelsRotate {
            channel: "orders".into(),
            grace_seconds: Some(0),
        },
        &target,
    )
    .await
    .unwrap();
    assert!(
        rotated.starts_with("new token (shown only now): ch_tok_"),
        "{rotated}"
    );
    let json = run(
        &Task::ChannelsList,
        &Target {
            json: true,
            ..target.clone()
        },
    )
    .await
    .unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(parsed[0]["name"], "orders");
    let bad = run(
        &Task::ChannelsList,
        &Target {
            token: "wrong".into(),
            ..target.clone()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(bad, "401: Invalid admin token");
    let missing = run(
        &Task::DeadLettersList {
            channel: "nope".into(),
            limit: None,
        },
        &target,
    )
    .await
    .unwrap_err();
    assert_eq!(missing, "404: Channel not found");

    // A dead letter to look at: the connector-side token changed, so post and nack via admin's view.
    let new_token = rotated
        .lines()
        .next()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_owned();
    let id = relay.post_ok("shop", "{}").await;
    let poll: serde_json::Value = relay
        .http
        .get(format!(
            "{}/connect/stream/orders/poll?timeout=5",
            relay.base
        ))
        .bearer_auth(&new_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let session = poll["connection_id"].as_str().unwrap();
    let nack = relay
        .http
        .post(format!(
            "{}/connect/ack?message_id={id}&status=nack&retry=false",
            relay.base
        ))
        .bearer_auth(&new_token)
        .header("x-connection-id", session)
        .send()
        .await
        .unwrap();
    assert_eq!(nack.status(), 200);
    let dead = run(
        &Task::DeadLettersList {
            channel: "orders".into(),
            limit: Some(10),
        },
        &target,
    )
    .await
    .unwrap();
    assert!(
        dead.contains(&id) && dead.contains("rejected") && dead.ends_with("1 of 1 shown"),
        "{dead}"
    );
    let replayed = run(
        &Task::DeadLettersReplay {
            channel: "orders".into(),
            message_id: Some(id.clone()),
        },
        &target,
    )
    .await
    .unwrap();
    assert_eq!(replayed, format!("replayed {id}"));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let purged = run(
        &Task::DeadLettersPurge {
            channel: "orders".into(),
            message_id: None,
        },
        &target,
    )
    .await
    .unwrap();
    assert_eq!(purged, "purged 0");
}
