//! The OpenAPI document lists exactly what the router serves: every path the router matches is
//! documented and every documented path is routed (paths read from the router itself), and on
//! each of them a method is documented exactly when the running relay routes it.

use std::collections::BTreeSet;

use webhook_relay::config::{FlagOverrides, LoadOptions, load};

use crate::support::{TestRelay, temp_dir};

const ADMIN: &str = "admin-token-0123456789abcdef";
const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// The paths the router of a relay configured like `relay` serves (built on a copy of its
/// configuration in another directory, so the two do not share a store).
async fn served_paths(relay: &TestRelay) -> BTreeSet<String> {
    let dir = temp_dir("openapi-router");
    let text = std::fs::read_to_string(relay.dir.join("relay.toml"))
        .unwrap()
        .replace(&relay.dir.display().to_string(), &dir.display().to_string());
    let path = dir.join("relay.toml");
    std::fs::write(&path, text).unwrap();
    let config = load(&LoadOptions {
        config_path: Some(path),
        flags: FlagOverrides::default(),
        env: vec![],
    })
    .unwrap();
    let buffer = webhook_relay::open_buffer(&config).await.unwrap();
    let state = webhook_relay::build_state(config, buffer).await.unwrap();
    let paths = webhook_relay::served_paths(state).into_iter().collect();
    let _ = std::fs::remove_dir_all(&dir);
    paths
}

fn sample(template: &str) -> String {
    template
        .replace("{webhook_id}", "shop")
        .replace("{namespace}", "ns")
        .replace("{channel}", "orders")
        .replace("{connection_id}", "wsc_x")
        .replace("{message_id}", "msg_x")
        .replace("{file}", "app.js")
}

/// Whether the running relay routes `method` on `path`: neither `405` nor the fallback's 404.
async fn routed(relay: &TestRelay, method: &str, path: &str) -> bool {
    let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
    let response = relay
        .http
        .request(method, format!("{}{path}", relay.base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    status != 405 && !(status == 404 && body == r#"{"detail":"Not Found"}"#)
}

#[tokio::test]
async fn openapi_lists_exactly_the_routes_and_methods_the_router_serves() {
    let relay = TestRelay::start("openapi", "", &format!("[admin]\ntoken = \"{ADMIN}\"")).await;
    let doc = relay.openapi().await;
    assert_eq!(doc["openapi"], "3.1.0");
    let documented: BTreeSet<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    let served = served_paths(&relay).await;
    assert!(
        served.contains("/admin/webhook-connect/overview"),
        "{served:?}"
    );
    let undocumented: Vec<_> = served.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from the document: {undocumented:?}"
    );
    let unrouted: Vec<_> = documented.difference(&served).collect();
    assert!(
        unrouted.is_empty(),
        "documented paths the router lacks: {unrouted:?}"
    );
    for path in &served {
        for method in METHODS {
            let in_doc = doc["paths"][path][method].is_object();
            let is_routed = routed(&relay, method, &sample(path)).await;
            assert_eq!(
                in_doc, is_routed,
                "{method} {path}: documented {in_doc}, routed {is_routed}"
            );
        }
    }
}
