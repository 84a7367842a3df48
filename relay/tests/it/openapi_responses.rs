//! Real answers of a running relay validate against the schemas the OpenAPI document gives
//! for their operation and status (JSON Schema 2020-12, as OpenAPI 3.1 uses): ingest, the
//! long-poll and ack, status and health, and every admin operation, success and error.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TOKEN, TestRelay};

const ADMIN: &str = "admin-token-0123456789abcdef";
const ADMIN_API: &str = "/admin/webhook-connect";

struct Checker {
    doc: Value,
    relay: TestRelay,
    checked: usize,
}

impl Checker {
    /// Validates `body` against the schema documented for `method` `template` answering
    /// `status`; panics with every violation.
    fn validate(&mut self, method: &str, template: &str, status: u16, body: &Value) {
        let response =
            &self.doc["paths"][template][method.to_lowercase()]["responses"][status.to_string()];
        assert!(
            response.is_object(),
            "{method} {template}: status {status} is not documented ({body})"
        );
        let schema = &response["content"]["application/json"]["schema"];
        assert!(
            schema.is_object(),
            "{method} {template} {status}: no JSON schema"
        );
        let mut root = json!({"components": self.doc["components"].clone()});
        for (k, v) in schema.as_object().unwrap() {
            root[k] = v.clone();
        }
        let validator = jsonschema::validator_for(&root)
            .unwrap_or_else(|e| panic!("{method} {template}: schema does not compile: {e}"));
        let errors: Vec<String> = validator
            .iter_errors(body)
            .map(|e| format!("{e} (at {})", e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{method} {template} {status}: {errors:#?}\nbody: {body:#}"
        );
        self.checked += 1;
    }

    /// Calls `method` `path` with `bearer` and `body`, checks the status is `expect` and the
    /// answer fits the schema of `template`; returns the answer.
    async fn call(
        &mut self,
        (method, template): (Method, &str),
        path: &str,
        bearer: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
        expect: u16,
    ) -> Value {
        let mut request = self
            .relay
            .http
            .request(method.clone(), format!("{}{path}", self.relay.base))
            .bearer_auth(bearer);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        if let Some(b) = body {
            request = request
                .header("content-type", "application/json")
                .body(b.to_owned());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        assert_eq!(status, expect, "{method} {path}: {text}");
        let value: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text}"));
        self.validate(method.as_str(), template, status, &value);
        value
    }

    async fn admin(
        &mut self,
        method: Method,
        template: &str,
        path: &str,
        body: Option<&str>,
        expect: u16,
    ) -> Value {
        self.call(
            (method, &format!("{ADMIN_API}{template}")),
            &format!("{ADMIN_API}{path}"),
            ADMIN,
            &[],
            body,
            expect,
        )
        .await
    }
}

#[tokio::test]
async fn real_answers_validate_against_their_documented_schemas() {
    let relay = TestRelay::start(
        "openapi-answers",
        "",
        &format!("[admin]\ntoken = \"{ADMIN}\""),
    )
    .await;
    let doc = relay.openapi().await;
    let mut c = Checker {
        doc,
        relay,
        checked: 0,
    };
    let get = Method::GET;
    let post = Method::POST;
    let delete = Method::DELETE;

    for (path, template) in [
        ("/webhook/shop", "/webhook/{webhook_id}"),
        ("/webhook/ns/shop", "/webhook/{namespace}/{webhook_id}"),
    ] {
        c.call(
            (post.clone(), template),
            path,
            "",
            &[],
            Some(r#"{"a":1}"#),
            200,
        )
        .await;
    }
    c.call(
        (post.clone(), "/webhook/{webhook_id}"),
        "/webhook/nope",
        "",
        &[],
        Some("{}"),
        404,
    )
    .await;
    for (path, status) in [("/healthz", 200), ("/readyz", 200), ("/health", 200)] {
        c.call((get.clone(), path), path, "", &[], None, status)
            .await;
    }
    c.call(
        (get.clone(), "/connect/status/{channel}"),
        "/connect/status/orders",
        TOKEN,
        &[],
        None,
        200,
    )
    .await;
    c.call(
        (get.clone(), "/connect/status/{channel}"),
        "/connect/status/orders",
        "wrong-token",
        &[],
        None,
        401,
    )
    .await;

    // Long-poll both messages (v2), nack one without retry (a dead letter), ack the other.
    let poll = c
        .call(
            (get.clone(), "/connect/stream/{channel}/poll"),
            "/connect/stream/orders/poll?timeout=5&max_messages=10",
            TOKEN,
            &[("x-webhook-connect-protocol", "2")],
            None,
            200,
        )
        .await;
    let session = poll["connection_id"].as_str().unwrap().to_owned();
    let ids: Vec<String> = poll["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 2, "{poll}");
    let v2 = [
        ("x-webhook-connect-protocol", "2"),
        ("x-connection-id", session.as_str()),
    ];
    c.call(
        (post.clone(), "/connect/ack"),
        &format!("/connect/ack?message_id={}&status=nack&retry=false", ids[0]),
        TOKEN,
        &v2,
        None,
        200,
    )
    .await;
    c.call(
        (post.clone(), "/connect/ack"),
        "/connect/ack",
        TOKEN,
        &v2,
        Some(&format!(r#"{{"acks":[{{"message_id":"{}"}}]}}"#, ids[1])),
        200,
    )
    .await;

    c.admin(get.clone(), "/health", "/health", None, 200).await;
    c.admin(get.clone(), "/overview", "/overview", None, 200)
        .await;
    c.admin(get.clone(), "/channels", "/channels", None, 200)
        .await;
    c.call(
        (get.clone(), &format!("{ADMIN_API}/channels")),
        &format!("{ADMIN_API}/channels"),
        "wrong",
        &[],
        None,
        401,
    )
    .await;
    c.admin(
        get.clone(),
        "/channels/{channel}",
        "/channels/nope",
        None,
        404,
    )
    .await;
    let created = c
        .admin(
            post.clone(),
            "/channels",
            "/channels",
            Some(r#"{"name":"billing","webhooks":{"invoices":{}}}"#),
            201,
        )
        .await;
    assert!(created["token"].as_str().is_some());
    c.admin(
        Method::PATCH,
        "/channels/{channel}",
        "/channels/billing",
        Some(r#"{"ttl_seconds":900}"#),
        200,
    )
    .await;
    c.admin(
        post.clone(),
        "/channels/{channel}/rotate-token",
        "/channels/billing/rotate-token",
        Some(r#"{"grace_period_seconds":60}"#),
        200,
    )
    .await;
    for verb in ["pause", "resume"] {
        c.admin(
            post.clone(),
            &format!("/channels/{{channel}}/{verb}"),
            &format!("/channels/orders/{verb}"),
            None,
            200,
        )
        .await;
    }
    c.admin(
        get.clone(),
        "/channels/{channel}/stats",
        "/channels/orders/stats",
        None,
        200,
    )
    .await;
    c.admin(
        get.clone(),
        "/channels/{channel}/webhook-stats",
        "/channels/orders/webhook-stats",
        None,
        200,
    )
    .await;
    let mut ws = c.relay.ws(true, &[]).await;
    ws.next_of("connected", Duration::from_secs(10)).await;
    let details = c
        .admin(
            get.clone(),
            "/channels/{channel}",
            "/channels/orders",
            None,
            200,
        )
        .await;
    let connection = details["connected_clients"][0]["connection_id"]
        .as_str()
        .unwrap()
        .to_owned();
    c.admin(
        delete.clone(),
        "/channels/{channel}/connections/{connection_id}",
        &format!("/channels/orders/connections/{connection}"),
        None,
        200,
    )
    .await;

    let dead = c
        .admin(
            get.clone(),
            "/channels/{channel}/dead-letters",
            "/channels/orders/dead-letters?include_body=true&limit=10",
            None,
            200,
        )
        .await;
    assert_eq!(dead["count"], 1, "{dead}");
    c.admin(
        get.clone(),
        "/channels/{channel}/dead-letters",
        "/channels/orders/dead-letters?limit=5000",
        None,
        422,
    )
    .await;
    c.admin(
        get.clone(),
        "/channels/{channel}/dead-letters/{message_id}",
        &format!("/channels/orders/dead-letters/{}", ids[0]),
        None,
        200,
    )
    .await;
    c.admin(
        post.clone(),
        "/channels/{channel}/dead-letters/{message_id}/replay",
        &format!("/channels/orders/dead-letters/{}/replay", ids[0]),
        None,
        200,
    )
    .await;
    c.admin(
        post.clone(),
        "/channels/{channel}/dead-letters/replay",
        "/channels/orders/dead-letters/replay",
        Some(r#"{"limit":10}"#),
        200,
    )
    .await;
    c.admin(
        delete.clone(),
        "/channels/{channel}/dead-letters/{message_id}",
        "/channels/orders/dead-letters/msg_missing",
        None,
        404,
    )
    .await;
    c.admin(
        delete.clone(),
        "/channels/{channel}/dead-letters",
        "/channels/orders/dead-letters?reason=rejected&limit=100",
        None,
        200,
    )
    .await;
    c.admin(
        delete.clone(),
        "/channels/{channel}",
        "/channels/billing?force=true",
        None,
        200,
    )
    .await;
    assert!(c.checked >= 30, "{} answers checked", c.checked);
}
