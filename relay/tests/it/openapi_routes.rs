//! The OpenAPI document parses, and every route it lists is really served by the router.

use crate::support::TestRelay;

#[tokio::test]
async fn openapi_lists_only_routes_the_router_serves() {
    let relay = TestRelay::start(
        "openapi",
        "",
        "[admin]\ntoken = \"admin-token-0123456789abcdef\"",
    )
    .await;
    let doc: serde_json::Value = relay
        .http
        .get(format!("{}/openapi.json", relay.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    assert_eq!(
        paths.len(),
        webhook_relay::openapi::ROUTES
            .iter()
            .map(|r| r.path)
            .collect::<std::collections::HashSet<_>>()
            .len()
    );
    for route in webhook_relay::openapi::ROUTES {
        let path = route
            .path
            .replace("{webhook_id}", "shop")
            .replace("{namespace}", "ns")
            .replace("{channel}", "orders")
            .replace("{connection_id}", "wsc_x")
            .replace("{message_id}", "msg_x");
        let method = reqwest::Method::from_bytes(route.method.to_uppercase().as_bytes()).unwrap();
        let response = relay
            .http
            .request(method, format!("{}{path}", relay.base))
            .bearer_auth("admin-token-0123456789abcdef")
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        assert_ne!(status, 405, "{} {} is not routed", route.method, route.path);
        assert!(
            !(status == 404 && body == r#"{"detail":"Not Found"}"#),
            "{} {} fell through to the fallback",
            route.method,
            route.path
        );
    }
}
