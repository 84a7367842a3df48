//! Every error answer is `application/json` `{"detail": "<string>"}` (`docs/reference/http-api.md` §0),
//! including the answers the HTTP framework gives on its own: extractor rejections, a bad
//! WebSocket upgrade, a body over an extractor's limit, wrong methods on nested routers.

use crate::support::{TOKEN, TestRelay};

const ADMIN: &str = "admin-token-0123456789abcdef";

#[tokio::test]
async fn framework_rejections_and_wrong_methods_answer_json_detail() {
    let relay = TestRelay::start("json-errors", "", &format!("[admin]\ntoken = \"{ADMIN}\"")).await;
    let base = &relay.base;
    let http = &relay.http;
    let admin = |r: reqwest::RequestBuilder| r.bearer_auth(ADMIN);
    let cases: Vec<(&str, reqwest::RequestBuilder, u16)> = vec![
        (
            "unknown path",
            http.get(format!("{base}/no/such/path")),
            404,
        ),
        (
            "GET on ingest",
            http.get(format!("{base}/webhook/shop")),
            405,
        ),
        (
            "DELETE on /healthz",
            http.delete(format!("{base}/healthz")),
            405,
        ),
        (
            "path segment that is not UTF-8",
            http.post(format!("{base}/webhook/%FF%FE")).body("{}"),
            400,
        ),
        (
            "namespaced path segment that is not UTF-8",
            http.post(format!("{base}/webhook/ns/%C3%28")).body("{}"),
            400,
        ),
        (
            "WebSocket route without an upgrade",
            http.get(format!("{base}/connect/stream/orders"))
                .bearer_auth(TOKEN),
            400,
        ),
        (
            "ack body over the extractor limit",
            http.post(format!("{base}/connect/ack"))
                .bearer_auth(TOKEN)
                .header("x-connection-id", "sse_x")
                .body(vec![b'['; 3 * 1024 * 1024]),
            413,
        ),
        ("GET on ack", http.get(format!("{base}/connect/ack")), 405),
        (
            "wrong method on a nested admin route",
            admin(http.put(format!("{base}/admin/webhook-connect/channels"))),
            405,
        ),
        (
            "unknown nested admin path",
            admin(http.get(format!("{base}/admin/webhook-connect/no-such-thing"))),
            404,
        ),
        (
            "admin path segment that is not UTF-8",
            admin(http.get(format!("{base}/admin/webhook-connect/channels/%FF"))),
            400,
        ),
    ];
    for (what, request, status) in cases {
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{what}");
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let allow = response.headers().get("allow").cloned();
        let text = response.text().await.unwrap();
        assert!(
            content_type.starts_with("application/json"),
            "{what}: {content_type} {text:?}"
        );
        let body: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("{what}: not JSON: {text:?}"));
        let detail = body["detail"].as_str().unwrap_or_default();
        assert!(!detail.is_empty(), "{what}: {text}");
        if status == 405 {
            assert!(allow.is_some(), "{what}: a 405 keeps its Allow header");
        }
    }
}
