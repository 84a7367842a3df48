//! The OpenAPI 3.1 document of the relay's HTTP API (`docs/reference/http-api.md` §2.5), generated once from
//! [`ROUTES`], the table of every route the router serves (a test checks the two agree).

use serde_json::{Map, Value, json};

/// How a route is authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// None.
    None,
    /// Per webhook (`docs/reference/auth-methods.md`).
    Webhook,
    /// The channel token.
    Channel,
    /// The admin token.
    Admin,
}

/// One documented route.
#[derive(Debug, Clone, Copy)]
pub struct RouteDoc {
    /// HTTP method, lower case.
    pub method: &'static str,
    /// Path with `{param}` segments.
    pub path: &'static str,
    /// What it does.
    pub summary: &'static str,
    /// Group.
    pub tag: &'static str,
    /// Authentication.
    pub auth: Auth,
    /// Success status.
    pub success: u16,
}

const fn r(
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    tag: &'static str,
    auth: Auth,
    success: u16,
) -> RouteDoc {
    RouteDoc {
        method,
        path,
        summary,
        tag,
        auth,
        success,
    }
}

/// Every route of the relay.
pub const ROUTES: &[RouteDoc] = &[
    r(
        "post",
        "/webhook/{webhook_id}",
        "Receive a webhook and store it durably",
        "ingest",
        Auth::Webhook,
        200,
    ),
    r(
        "post",
        "/webhook/{namespace}/{webhook_id}",
        "Receive a webhook on the namespaced route",
        "ingest",
        Auth::Webhook,
        200,
    ),
    r(
        "get",
        "/connect/stream/{channel}",
        "WebSocket stream of a channel (upgrade)",
        "streaming",
        Auth::Channel,
        101,
    ),
    r(
        "get",
        "/connect/stream/{channel}/sse",
        "Server-Sent Events stream of a channel",
        "streaming",
        Auth::Channel,
        200,
    ),
    r(
        "get",
        "/connect/stream/{channel}/poll",
        "Long-poll for messages of a channel",
        "streaming",
        Auth::Channel,
        200,
    ),
    r(
        "post",
        "/connect/ack",
        "Ack, nack or touch messages delivered over SSE or long-poll",
        "streaming",
        Auth::Channel,
        200,
    ),
    r(
        "get",
        "/connect/status/{channel}",
        "Channel status for a connector",
        "streaming",
        Auth::Channel,
        200,
    ),
    r(
        "get",
        "/healthz",
        "Process is up",
        "operations",
        Auth::None,
        200,
    ),
    r(
        "get",
        "/readyz",
        "Buffer and state store reachable",
        "operations",
        Auth::None,
        200,
    ),
    r(
        "get",
        "/health",
        "Health in the original's format",
        "operations",
        Auth::None,
        200,
    ),
    r(
        "get",
        "/metrics",
        "Prometheus metrics",
        "operations",
        Auth::None,
        200,
    ),
    r(
        "get",
        "/openapi.json",
        "This document",
        "operations",
        Auth::None,
        200,
    ),
    r(
        "get",
        "/admin/webhook-connect/health",
        "Admin health (counts for admins only)",
        "admin",
        Auth::None,
        200,
    ),
    r(
        "get",
        "/admin/webhook-connect/overview",
        "Overview of channels and connections",
        "admin",
        Auth::Admin,
        200,
    ),
    r(
        "get",
        "/admin/webhook-connect/channels",
        "List channels",
        "admin",
        Auth::Admin,
        200,
    ),
    r(
        "post",
        "/admin/webhook-connect/channels",
        "Create a channel",
        "admin",
        Auth::Admin,
        201,
    ),
    r(
        "get",
        "/admin/webhook-connect/channels/{channel}",
        "Channel details",
        "admin",
        Auth::Admin,
        200,
    ),
    r(
        "delete",
        "/admin/webhook-connect/channels/{channel}",
        "Delete a channel",
        "admin",
        Auth::Admin,
        200,
    ),
    r(
        "post",
        "/admin/webhook-connect/channels/{channel}/rotate-token",
        "Rotate the channel token with a grace period",
        "admin",
        Auth::Admin,
        200,
    ),
    r(
        "post",
        "/admin/webhook-connect/channels/{channel}/pause",
        "Pause deliveries",
        "admin",
        Auth::Admin,
        200,
    ),
    r(
        "post",
        "/admin/webhook-connect/channels/{channel}/resume",
        "Resume deliveries",
        "admin",
        Auth::Admin,
        200,
    ),
    r(
        "get",
        "/admin/webhook-connect/channels/{channel}/stats",
        "Channel statistics",
        "admin",
        Auth::Admin,
        200,
    ),
    r(
        "get",
        "/admin/webhook-connect/channels/{channel}/webhook-stats",
        "Per-webhook statistics",
        "admin",
        Auth::Admin,
        200,
    ),
    r(
        "delete",
        "/admin/webhook-connect/channels/{channel}/connections/{connection_id}",
        "Disconnect a connection",
        "admin",
        Auth::Admin,
        200,
    ),
    r(
        "get",
        "/admin/webhook-connect/channels/{channel}/dead-letters",
        "List dead letters (paged)",
        "admin",
        Auth::Admin,
        200,
    ),
    r(
        "delete",
        "/admin/webhook-connect/channels/{channel}/dead-letters",
        "Purge dead letters",
        "admin",
        Auth::Admin,
        200,
    ),
    r(
        "post",
        "/admin/webhook-connect/channels/{channel}/dead-letters/replay",
        "Replay dead letters",
        "admin",
        Auth::Admin,
        200,
    ),
    r(
        "get",
        "/admin/webhook-connect/channels/{channel}/dead-letters/{message_id}",
        "One dead letter with its body",
        "admin",
        Auth::Admin,
        200,
    ),
    r(
        "delete",
        "/admin/webhook-connect/channels/{channel}/dead-letters/{message_id}",
        "Purge one dead letter",
        "admin",
        Auth::Admin,
        200,
    ),
    r(
        "post",
        "/admin/webhook-connect/channels/{channel}/dead-letters/{message_id}/replay",
        "Replay one dead letter",
        "admin",
        Auth::Admin,
        200,
    ),
];

fn error_response(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

/// Builds the document.
pub fn document(public_base_url: &str) -> Value {
    let mut paths = Map::new();
    for route in ROUTES {
        let parameters: Vec<Value> = route
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let mut responses = Map::new();
        responses.insert(route.success.to_string(), json!({"description": "Success"}));
        match route.auth {
            Auth::None => {}
            Auth::Admin => {
                responses.insert(
                    "401".into(),
                    error_response("Missing or invalid admin token"),
                );
                responses.insert("403".into(), error_response("Admin API disabled"));
                responses.insert(
                    "429".into(),
                    error_response("Too many failed authentication attempts"),
                );
            }
            Auth::Channel | Auth::Webhook => {
                responses.insert(
                    "401".into(),
                    error_response("Missing or invalid credentials"),
                );
            }
        }
        if route.path.contains('{') {
            responses.insert("404".into(), error_response("Not found"));
        }
        responses.insert("503".into(), error_response("Service unavailable"));
        let mut operation = json!({
            "summary": route.summary,
            "tags": [route.tag],
            "operationId": format!("{}{}", route.method, route.path.replace(['/', '{', '}', '-', '.'], "_")),
            "parameters": parameters,
            "responses": responses,
        });
        match route.auth {
            Auth::Admin => operation["security"] = json!([{"adminToken": []}]),
            Auth::Channel => operation["security"] = json!([{"channelToken": []}]),
            _ => {}
        }
        let entry = paths
            .entry(route.path.to_owned())
            .or_insert_with(|| json!({}));
        entry[route.method] = operation;
    }
    let servers = if public_base_url.is_empty() {
        json!([])
    } else {
        json!([{"url": public_base_url}])
    };
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Webhook Connect relay", "version": env!("CARGO_PKG_VERSION")},
        "servers": servers,
        "paths": paths,
        "components": {
            "securitySchemes": {
                "adminToken": {"type": "http", "scheme": "bearer", "description": "The relay's admin token"},
                "channelToken": {"type": "http", "scheme": "bearer", "description": "A channel token"}
            },
            "schemas": {
                "Error": {"type": "object", "required": ["detail"], "properties": {"detail": {"type": "string"}}}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented_once_with_its_path_parameters() {
        let doc = document("https://relay.example.com");
        assert_eq!(doc["openapi"], "3.1.0");
        let mut count = 0;
        for route in ROUTES {
            let op = &doc["paths"][route.path][route.method];
            assert!(op.is_object(), "{} {}", route.method, route.path);
            let params = route.path.matches('{').count();
            assert_eq!(op["parameters"].as_array().map(Vec::len), Some(params));
            count += 1;
        }
        let documented: usize = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|p| p.as_object().unwrap().len())
            .sum();
        assert_eq!(documented, count, "no route is listed twice");
    }
}
