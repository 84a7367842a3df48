//! The admin API against a real in-process relay on the embedded store.

use std::time::Duration;

use crate::support::{TOKEN, TestRelay, WsEvent, eventually};

const ADMIN: &str = "admin-token-0123456789abcdef";
const WAIT: Duration = Duration::from_secs(10);

fn admin_section() -> String {
    format!("[admin]\ntoken = \"{ADMIN}\"")
}

async fn admin(
    relay: &TestRelay,
    method: reqwest::Method,
    path: &str,
    body: Option<&str>,
) -> (u16, serde_json::Value) {
    relay.admin_call(ADMIN, method, path, body).await
}

async fn stream_status(relay: &TestRelay, token: &str) -> u16 {
    relay
        .http
        .get(format!("{}/connect/status/orders", relay.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn admin_auth_is_checked_first_and_failures_are_limited_per_ip_r47() {
    let disabled = TestRelay::start("admin-off", "", "").await;
    let r = disabled
        .http
        .get(format!("{}/admin/webhook-connect/channels", disabled.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.text().await.unwrap(),
        r#"{"detail":"Admin API disabled. Set WEBHOOK_CONNECT_ADMIN_TOKEN environment variable."}"#
    );
    let relay = TestRelay::start("admin-auth", "", &admin_section()).await;
    let url = format!(
        "{}/admin/webhook-connect/channels/no-such-channel",
        relay.base
    );
    let r = relay.http.get(&url).send().await.unwrap();
    assert_eq!(
        (r.status().as_u16(), r.text().await.unwrap()),
        (401, r#"{"detail":"Missing authorization header"}"#.into())
    );
    let r = relay
        .http
        .get(&url)
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), r.text().await.unwrap()),
        (401, r#"{"detail":"Invalid admin token"}"#.into())
    );
    let r = relay
        .http
        .get(&url)
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "auth passes before the 404");
    assert_eq!(r.headers().get("cache-control").unwrap(), "no-store");
    for _ in 0..8 {
        relay
            .http
            .get(&url)
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap();
    }
    let r = relay
        .http
        .get(&url)
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        429,
        "ten failures in a minute lock out even the right token"
    );
}

#[tokio::test]
async fn admin_health_shows_counts_only_to_admins_r51() {
    let relay = TestRelay::start("admin-health", "", &admin_section()).await;
    let public: serde_json::Value = relay
        .http
        .get(format!("{}/admin/webhook-connect/health", relay.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(public["status"], "healthy");
    assert!(public.get("channels_count").is_none());
    let (status, private) = admin(&relay, reqwest::Method::GET, "/health", None).await;
    assert_eq!(status, 200);
    assert_eq!(private["channels_count"], 1);
}

#[tokio::test]
async fn channel_reads_never_show_tokens_and_count_waiting_messages() {
    let relay = TestRelay::start("admin-read", "", &admin_section()).await;
    relay.post_ok("shop", "{}").await;
    relay.post_ok("shop", "{}").await;
    let (_, list) = admin(&relay, reqwest::Method::GET, "/channels", None).await;
    assert_eq!(list[0]["name"], "orders");
    assert_eq!(list[0]["webhook_ids"], serde_json::json!(["other", "shop"]));
    let (_, details) = admin(&relay, reqwest::Method::GET, "/channels/orders", None).await;
    assert_eq!(details["stats"]["messages_queued"], 2);
    assert_eq!(details["stats"]["webhook_stats"]["shop"], 2);
    assert_eq!(details["config"]["source"], "config");
    assert!(!details.to_string().contains(TOKEN));
    let (_, ws) = admin(
        &relay,
        reqwest::Method::GET,
        "/channels/orders/webhook-stats",
        None,
    )
    .await;
    assert_eq!(ws["webhooks"]["shop"]["pending"], 2);
    let (_, overview) = admin(&relay, reqwest::Method::GET, "/overview", None).await;
    assert_eq!(overview["channels"]["orders"]["messages_queued"], 2);
}

#[tokio::test]
async fn rotation_keeps_the_old_token_for_the_grace_period_and_persists_across_restart_r53_r54_r59()
{
    let dir = crate::support::temp_dir("admin-rotate");
    let mut relay = TestRelay::start_in(dir.clone(), "", &admin_section()).await;
    for bad in [
        r#"{"grace_period_seconds": -1}"#,
        r#"{"grace_period_seconds": 604801}"#,
        r#"{"grace_period_seconds": "x"}"#,
    ] {
        let (status, body) = admin(
            &relay,
            reqwest::Method::POST,
            "/channels/orders/rotate-token",
            Some(bad),
        )
        .await;
        assert_eq!(status, 422, "{bad}");
        assert_eq!(
            body["detail"],
            "grace_period_seconds must be an integer between 0 and 604800"
        );
    }
    let (status, rotated) = admin(
        &relay,
        reqwest::Method::POST,
        "/channels/orders/rotate-token",
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        rotated["message"],
        "Old token valid for 3600 seconds grace period"
    );
    let first = rotated["new_token"].as_str().unwrap().to_owned();
    assert!(first.starts_with("ch_tok_") && first.len() == 7 + 48);
    let (_, details) = admin(&relay, reqwest::Method::GET, "/channels/orders", None).await;
    assert_eq!(
        details["config"]["old_token_expires_at"], rotated["old_token_expires_at"],
        "R-59"
    );
    assert_eq!(
        stream_status(&relay, TOKEN).await,
        200,
        "old token valid in the grace period"
    );
    assert_eq!(stream_status(&relay, &first).await, 200);
    let (_, again) = admin(
        &relay,
        reqwest::Method::POST,
        "/channels/orders/rotate-token",
        Some(r#"{"grace_period_seconds": 0}"#),
    )
    .await;
    let second = again["new_token"].as_str().unwrap().to_owned();
    assert_eq!(
        stream_status(&relay, TOKEN).await,
        401,
        "only one previous token is kept"
    );
    assert_eq!(
        stream_status(&relay, &first).await,
        401,
        "grace 0 ends it at once"
    );
    assert_eq!(stream_status(&relay, &second).await, 200);
    let (_, paused) = admin(
        &relay,
        reqwest::Method::POST,
        "/channels/orders/pause",
        None,
    )
    .await;
    assert_eq!(
        paused,
        serde_json::json!({"channel": "orders", "paused": true})
    );
    relay.stop().await;
    let state = std::fs::read_to_string(dir.join("state.json")).unwrap();
    assert!(
        !state.contains(&second) && !state.contains(TOKEN),
        "R-132: only hashes are stored"
    );
    let restarted = TestRelay::start_in(dir, "", &admin_section()).await;
    restarted.post_ok("shop", "{}").await;
    assert_eq!(
        stream_status(&restarted, &second).await,
        200,
        "R-53: the rotation survives restart and webhooks"
    );
    assert_eq!(stream_status(&restarted, TOKEN).await, 401);
    let (_, details) = admin(&restarted, reqwest::Method::GET, "/channels/orders", None).await;
    assert_eq!(
        details["config"]["paused"], true,
        "R-57: pause state persists"
    );
}

#[tokio::test]
async fn pausing_stops_deliveries_only_and_resume_delivers_r32() {
    let relay = TestRelay::start("admin-pause", "", &admin_section()).await;
    admin(
        &relay,
        reqwest::Method::POST,
        "/channels/orders/pause",
        None,
    )
    .await;
    let id = relay.post_ok("shop", "{}").await;
    let mut ws = relay.ws(false, &[]).await;
    ws.next_of("connected", WAIT).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(700), ws.next(WAIT))
            .await
            .is_err(),
        "nothing delivered while paused"
    );
    admin(
        &relay,
        reqwest::Method::POST,
        "/channels/orders/resume",
        None,
    )
    .await;
    assert_eq!(ws.next_of("webhook", WAIT).await["message_id"], id);
}

#[tokio::test]
async fn admin_disconnect_closes_websocket_and_sse_and_requeues_r34() {
    let relay = TestRelay::start(
        "admin-disc",
        "requeue_delay_initial_ms = 0\nrequeue_delay_max_ms = 0",
        &admin_section(),
    )
    .await;
    let id = relay.post_ok("shop", "{}").await;
    let mut ws = relay.ws(true, &[]).await;
    let connection = ws.next_of("connected", WAIT).await["connection_id"]
        .as_str()
        .unwrap()
        .to_owned();
    ws.next_of("webhook", WAIT).await;
    let (status, body) = admin(
        &relay,
        reqwest::Method::DELETE,
        &format!("/channels/orders/connections/{connection}"),
        None,
    )
    .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("disconnected"))
    );
    let notice = ws.next_of("close", Duration::from_secs(2)).await;
    assert_eq!(notice["code"], 4005);
    assert!(matches!(
        ws.next(Duration::from_secs(2)).await,
        WsEvent::Closed(Some(4005))
    ));
    let mut sse = relay.sse(false).await;
    let connected = sse.next_named("connected", WAIT).await;
    let sse_id =
        serde_json::from_str::<serde_json::Value>(&connected.data).unwrap()["connection_id"]
            .as_str()
            .unwrap()
            .to_owned();
    let redelivered = sse.next_named("webhook", WAIT).await;
    assert!(
        redelivered.data.contains(&id),
        "the lease was released for redelivery"
    );
    admin(
        &relay,
        reqwest::Method::DELETE,
        &format!("/channels/orders/connections/{sse_id}"),
        None,
    )
    .await;
    let mut ended = false;
    for _ in 0..20 {
        match tokio::time::timeout(Duration::from_secs(2), sse.next(WAIT)).await {
            Ok(None) => {
                ended = true;
                break;
            }
            Ok(Some(_)) => continue,
            Err(_) => break,
        }
    }
    assert!(ended, "the SSE stream ended");
    let (status, _) = admin(
        &relay,
        reqwest::Method::DELETE,
        "/channels/orders/connections/wsc_nope",
        None,
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn dead_letters_list_read_only_replay_and_purge_r48_r49_r56() {
    let relay = TestRelay::start("admin-dlq", "", &admin_section()).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(relay.post_ok("shop", &format!(r#"{{"i":{i}}}"#)).await);
    }
    let mut ws = relay.ws(true, &[]).await;
    ws.next_of("connected", WAIT).await;
    let mut delivered = Vec::new();
    for _ in 0..3 {
        delivered.push(ws.next_of("webhook", WAIT).await["message_id"].clone());
    }
    for id in delivered {
        ws.send(&format!(
            r#"{{"type":"nack","message_id":{id},"retry":false,"reason":"no"}}"#
        ))
        .await;
        ws.next_of("ack_result", WAIT).await;
    }
    for bad in ["0", "-1", "1001", "x"] {
        let (status, body) = admin(
            &relay,
            reqwest::Method::GET,
            &format!("/channels/orders/dead-letters?limit={bad}"),
            None,
        )
        .await;
        assert_eq!(
            (status, body["detail"].as_str()),
            (422, Some("limit must be an integer between 1 and 1000")),
            "{bad}"
        );
    }
    let (_, first) = admin(
        &relay,
        reqwest::Method::GET,
        "/channels/orders/dead-letters?limit=2",
        None,
    )
    .await;
    let (_, second) = admin(
        &relay,
        reqwest::Method::GET,
        "/channels/orders/dead-letters?limit=2",
        None,
    )
    .await;
    assert_eq!(first, second, "R-49: listing changes nothing");
    assert_eq!(
        (first["count"].as_u64(), first["total"].as_u64()),
        (Some(2), Some(3))
    );
    assert_eq!(first["messages"][0]["dead_letter_reason"], "rejected");
    assert_eq!(first["messages"][0]["last_error"], "no");
    let cursor = first["next_cursor"].as_str().unwrap();
    let (_, rest) = admin(
        &relay,
        reqwest::Method::GET,
        &format!("/channels/orders/dead-letters?limit=2&cursor={cursor}"),
        None,
    )
    .await;
    assert_eq!(rest["count"], 1);
    let (status, one) = admin(
        &relay,
        reqwest::Method::GET,
        &format!("/channels/orders/dead-letters/{}", ids[0]),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(one["body"].is_string());
    let (status, _) = admin(
        &relay,
        reqwest::Method::POST,
        &format!("/channels/orders/dead-letters/{}/replay", ids[0]),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let again = ws.next_of("webhook", WAIT).await;
    assert_eq!(again["message_id"], ids[0]);
    assert_eq!(
        again["delivery_count"], 1,
        "R-56: a replay starts counting afresh"
    );
    assert_eq!(again["sequence"], 1);
    let (status, purged) = admin(
        &relay,
        reqwest::Method::DELETE,
        "/channels/orders/dead-letters",
        None,
    )
    .await;
    assert_eq!((status, purged["purged"].as_u64()), (200, Some(2)));
    let (status, _) = admin(
        &relay,
        reqwest::Method::GET,
        &format!("/channels/orders/dead-letters/{}", ids[1]),
        None,
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn closed_connections_leave_the_admin_listing_promptly() {
    let relay = TestRelay::start("admin-conns", "", &admin_section()).await;
    let ws = relay.ws(false, &[("x-connector-id", "office 1")]).await;
    let (_, details) = admin(&relay, reqwest::Method::GET, "/channels/orders", None).await;
    assert_eq!(details["connected_clients"][0]["connector_id"], "office_1");
    assert_eq!(details["connected_clients"][0]["protocol"], "websocket");
    drop(ws);
    assert!(
        eventually(Duration::from_secs(2), || async {
            admin(&relay, reqwest::Method::GET, "/channels/orders", None)
                .await
                .1["connected_clients"]
                .as_array()
                .is_some_and(Vec::is_empty)
        })
        .await
    );
}

#[tokio::test]
async fn channels_can_be_created_used_persisted_and_deleted_r55() {
    let dir = crate::support::temp_dir("admin-create");
    let mut relay = TestRelay::start_in(dir.clone(), "", &admin_section()).await;
    let definition = r#"{"name":"payments","webhooks":{"stripe":{"authorization":"Bearer sender-secret"}},"max_queue_size":5,"ack_timeout_seconds":60}"#;
    let (status, created) =
        admin(&relay, reqwest::Method::POST, "/channels", Some(definition)).await;
    assert_eq!(status, 201, "{created}");
    let token = created["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("ch_tok_"));
    assert_eq!(created["config"]["source"], "admin");
    assert_eq!(created["config"]["max_queue_size"], 5);
    let (status, body) = admin(&relay, reqwest::Method::POST, "/channels", Some(definition)).await;
    assert_eq!(
        (status, body["detail"].as_str()),
        (409, Some("Channel already exists"))
    );
    let (status, body) = admin(
        &relay,
        reqwest::Method::POST,
        "/channels",
        Some(r#"{"name":"x2","webhooks":{"shop":{}}}"#),
    )
    .await;
    assert_eq!(
        (status, body["detail"].as_str()),
        (409, Some("Webhook ID already in use: shop"))
    );
    let (status, body) = admin(
        &relay,
        reqwest::Method::POST,
        "/channels",
        Some(r#"{"name":"a*b"}"#),
    )
    .await;
    assert_eq!(status, 422);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .starts_with("name: Invalid channel name format"),
        "{body}"
    );
    let (status, body) = admin(
        &relay,
        reqwest::Method::POST,
        "/channels",
        Some(r#"{"name":"ok","bogus":1}"#),
    )
    .await;
    assert_eq!(status, 422);
    assert!(body["detail"].as_str().unwrap().contains("bogus"), "{body}");
    let (status, body) = admin(&relay, reqwest::Method::DELETE, "/channels/orders", None).await;
    assert_eq!(
        (status, body["detail"].as_str()),
        (409, Some("Channel is defined in configuration"))
    );
    // The new channel takes webhooks at once.
    let post = |auth: &'static str| {
        relay
            .http
            .post(format!("{}/webhook/stripe", relay.base))
            .header("authorization", auth)
            .header("content-type", "application/json")
            .body("{}")
            .send()
    };
    assert_eq!(post("Bearer sender-secret").await.unwrap().status(), 200);
    assert_eq!(post("Bearer wrong").await.unwrap().status(), 401);
    let status_of = |token: String| {
        let http = relay.http.clone();
        let url = format!("{}/connect/status/payments", relay.base);
        async move {
            http.get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    assert_eq!(
        status_of(token.clone()).await["stats"]["messages_queued"],
        1
    );
    relay.stop().await;
    assert!(
        !std::fs::read_to_string(dir.join("state.json"))
            .unwrap()
            .contains(&token)
    );
    let relay = TestRelay::start_in(dir, "", &admin_section()).await;
    let status_of = |token: String| {
        let http = relay.http.clone();
        let url = format!("{}/connect/status/payments", relay.base);
        async move { http.get(url).bearer_auth(token).send().await.unwrap() }
    };
    let after = status_of(token.clone()).await;
    assert_eq!(
        after.status(),
        200,
        "the admin-created channel and its token survive a restart"
    );
    assert_eq!(
        after.json::<serde_json::Value>().await.unwrap()["stats"]["messages_queued"],
        1
    );
    let (status, body) = admin(&relay, reqwest::Method::DELETE, "/channels/payments", None).await;
    assert_eq!(
        (status, body["detail"].as_str()),
        (409, Some("Channel is not empty; use force=true"))
    );
    let (status, body) = admin(
        &relay,
        reqwest::Method::DELETE,
        "/channels/payments?force=true",
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        (body["status"].as_str(), body["messages_deleted"].as_u64()),
        (Some("deleted"), Some(1))
    );
    let gone = relay
        .http
        .post(format!("{}/webhook/stripe", relay.base))
        .header("authorization", "Bearer sender-secret")
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);
    assert_eq!(status_of(token).await.status(), 401);
}

#[tokio::test]
async fn patch_merges_limits_and_webhooks_and_refuses_config_channels_r55() {
    let relay = TestRelay::start("admin-patch", "", &admin_section()).await;
    let (status, _) = admin(
        &relay,
        reqwest::Method::POST,
        "/channels",
        Some(r#"{"name":"pay","webhooks":{"a":{},"b":{}},"max_queue_size":1}"#),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(relay.post("a", "{}").await.status(), 200);
    assert_eq!(
        relay.post("a", "{}").await.status(),
        429,
        "max_queue_size 1"
    );
    let (status, details) = admin(
        &relay,
        reqwest::Method::PATCH,
        "/channels/pay",
        Some(
            r#"{"max_queue_size":5,"webhooks":{"b":null,"c":{"authorization":"Bearer c-secret"}}}"#,
        ),
    )
    .await;
    assert_eq!(status, 200, "{details}");
    assert_eq!(details["config"]["max_queue_size"], 5);
    assert_eq!(
        details["config"]["webhook_ids"],
        serde_json::json!(["a", "c"])
    );
    assert_eq!(
        relay.post("a", "{}").await.status(),
        200,
        "the new limit applies at once"
    );
    assert_eq!(
        relay.post("b", "{}").await.status(),
        404,
        "a detached webhook stops routing"
    );
    let c = relay
        .http
        .post(format!("{}/webhook/c", relay.base))
        .header("authorization", "Bearer c-secret")
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(c.status(), 200);
    let (status, body) = admin(
        &relay,
        reqwest::Method::PATCH,
        "/channels/pay",
        Some(r#"{"name":"x"}"#),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = admin(
        &relay,
        reqwest::Method::PATCH,
        "/channels/pay",
        Some(r#"{"ttl_seconds":0}"#),
    )
    .await;
    assert_eq!(status, 422);
    assert!(
        body["detail"].as_str().unwrap().contains("ttl_seconds"),
        "{body}"
    );
    let (status, _) = admin(
        &relay,
        reqwest::Method::PATCH,
        "/channels/pay",
        Some(r#"{"webhooks":{"shop":{}}}"#),
    )
    .await;
    assert_eq!(status, 409, "shop belongs to orders");
    let (status, _) = admin(
        &relay,
        reqwest::Method::PATCH,
        "/channels/orders",
        Some(r#"{"max_queue_size":5}"#),
    )
    .await;
    assert_eq!(status, 409);
}

#[tokio::test]
async fn with_admin_listen_the_admin_api_is_served_only_there() {
    let port = crate::support::free_port();
    let relay = TestRelay::start(
        "admin-listen",
        "",
        &format!("[admin]\ntoken = \"{ADMIN}\"\nlisten = \"127.0.0.1:{port}\""),
    )
    .await;
    let main = relay
        .http
        .get(format!("{}/admin/webhook-connect/channels", relay.base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(main.status(), 404);
    let body = crate::support::get_when_up(
        &relay.http,
        &format!("http://127.0.0.1:{port}/admin/webhook-connect/channels"),
        Some(ADMIN),
    )
    .await;
    assert!(
        body.contains("orders"),
        "the admin listener answered: {body}"
    );
}

#[tokio::test]
async fn connections_on_a_token_that_stopped_being_valid_are_closed_with_4001() {
    let relay = TestRelay::start("admin-4001", "", &admin_section()).await;
    let mut ws = relay.ws(true, &[]).await;
    ws.next_of("connected", WAIT).await;
    let (status, _) = admin(
        &relay,
        reqwest::Method::POST,
        "/channels/orders/rotate-token",
        Some(r#"{"grace_period_seconds": 0}"#),
    )
    .await;
    assert_eq!(status, 200);
    let notice = ws.next_of("close", WAIT).await;
    assert_eq!(
        (notice["code"].as_u64(), notice["reconnect"].as_bool()),
        (Some(4001), Some(false))
    );
    assert!(matches!(ws.next(WAIT).await, WsEvent::Closed(Some(4001))));
}
