//! The OpenAPI 3.1 document of the relay's HTTP API (`docs/reference/http-api.md` §2.5),
//! generated with utoipa: one operation per route in [`paths`], request and response schemas
//! from the types the admin handlers serialize (`crate::http::admin`, `crate::stats`) and, for
//! the wire bodies whose types live in the protocol crate, from [`wire`]. The tests
//! `openapi_routes` (every route of the router is documented, and the reverse) and
//! `openapi_responses` (real answers validate against their schemas) keep it true.

mod paths;
mod wire;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::server::Server;
use utoipa::openapi::{RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::http::error::ErrorBody;

/// The security schemes: the admin token, a channel token and the metrics token, each a
/// bearer token.
#[derive(Debug)]
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for (name, description) in [
            ("adminToken", "The relay's admin token (`admin.token`)"),
            ("channelToken", "A channel token"),
            ("metricsToken", "`metrics.bearer_token`, when set"),
        ] {
            components.add_security_scheme(
                name,
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some(description))
                        .build(),
                ),
            );
        }
    }
}

/// The error answers every operation can give, by the authentication it takes: 401, 403 and
/// 429 for the admin token, 401 for a channel token, 503 for every operation.
#[derive(Debug)]
struct CommonErrors;

fn error_response(description: &str) -> RefOr<Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                utoipa::openapi::ContentBuilder::new()
                    .schema(Some(utoipa::openapi::Ref::from_schema_name("Error")))
                    .build(),
            )
            .build(),
    )
}

impl Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                let schemes: Vec<String> = op
                    .security
                    .iter()
                    .flatten()
                    .filter_map(|s| serde_json::to_value(s).ok())
                    .filter_map(|v| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()))
                    .flatten()
                    .collect();
                let optional = op
                    .security
                    .iter()
                    .flatten()
                    .any(|s| serde_json::to_value(s).is_ok_and(|v| v == serde_json::json!({})));
                let mut add = |status: &str, description: &str| {
                    op.responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| error_response(description));
                };
                if schemes.iter().any(|s| s == "adminToken") && !optional {
                    add("401", "Missing or invalid admin token");
                    add("403", "Admin API disabled (no admin token configured)");
                    add("429", "Too many failed authentication attempts");
                }
                if schemes.iter().any(|s| s == "channelToken") {
                    add("401", "Missing or invalid channel token");
                    add("403", "Client address not allowed for the channel");
                }
                add("503", "Service unavailable");
            }
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Webhook Connect relay",
        description = "Ingest, connector streams, operations and the admin API of a Webhook \
                       Connect relay (docs/reference/http-api.md)."
    ),
    paths(
        paths::ingest,
        paths::ingest_namespaced,
        paths::stream_websocket,
        paths::stream_sse,
        paths::stream_poll,
        paths::ack,
        paths::connect_status,
        paths::healthz,
        paths::readyz,
        paths::health,
        paths::metrics,
        paths::openapi,
        paths::admin_health,
        paths::overview,
        paths::list_channels,
        paths::create_channel,
        paths::get_channel,
        paths::update_channel,
        paths::delete_channel,
        paths::rotate_token,
        paths::pause_channel,
        paths::resume_channel,
        paths::channel_stats,
        paths::webhook_stats,
        paths::disconnect,
        paths::list_dead_letters,
        paths::purge_dead_letters,
        paths::replay_dead_letters,
        paths::get_dead_letter,
        paths::purge_dead_letter,
        paths::replay_dead_letter,
        paths::get_message_trace,
        paths::dashboard_redirect,
        paths::dashboard_page,
        paths::dashboard_file,
    ),
    components(schemas(ErrorBody)),
    modifiers(&SecuritySchemes, &CommonErrors),
    tags(
        (name = "ingest", description = "Webhooks from senders"),
        (name = "streaming", description = "Connector streams and acknowledgements"),
        (name = "operations", description = "Health, readiness, metrics, this document"),
        (name = "admin", description = "The admin API under /admin/webhook-connect"),
        (name = "dashboard", description = "The dashboard's static files under /admin/ui/"),
    )
)]
struct ApiDoc;

/// The document, with `public_base_url` (when set) as its server.
pub fn document(public_base_url: &str) -> serde_json::Value {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    if !public_base_url.is_empty() {
        doc.servers = Some(vec![Server::new(public_base_url)]);
    }
    serde_json::to_value(&doc).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_has_a_success_body_and_admin_operations_their_errors() {
        let doc = document("https://relay.example.com");
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["servers"][0]["url"], "https://relay.example.com");
        let paths = doc["paths"].as_object().unwrap();
        let mut operations = 0;
        for (path, item) in paths {
            for (method, op) in item.as_object().unwrap() {
                operations += 1;
                let responses = op["responses"].as_object().unwrap();
                let success = responses
                    .iter()
                    .find(|(s, _)| s.starts_with('2') || *s == "101" || *s == "308")
                    .unwrap_or_else(|| panic!("{method} {path}: no success answer"));
                if !matches!(success.0.as_str(), "101" | "308") {
                    assert!(
                        success.1["content"].is_object(),
                        "{method} {path}: success without a body schema"
                    );
                }
                assert!(responses.contains_key("503"), "{method} {path}");
                if path.starts_with("/admin/webhook-connect/")
                    && path != "/admin/webhook-connect/health"
                {
                    assert_eq!(op["security"][0]["adminToken"], serde_json::json!([]));
                    assert!(responses.contains_key("401"), "{method} {path}");
                }
                let params = path.matches('{').count();
                let in_path = op["parameters"]
                    .as_array()
                    .map_or(0, |p| p.iter().filter(|p| p["in"] == "path").count());
                assert_eq!(in_path, params, "{method} {path}: path parameters");
            }
        }
        assert_eq!(operations, 35);
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for name in [
            "Error",
            "ChannelDetails",
            "DeadLetterList",
            "PollResponse",
            "MessageTraceView",
        ] {
            assert!(schemas.contains_key(name), "{name}");
        }
        let list = &doc["paths"]["/admin/webhook-connect/channels/{channel}/dead-letters"]["get"];
        let names: Vec<&str> = list["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert!(
            names.contains(&"limit") && names.contains(&"cursor"),
            "{names:?}"
        );
    }
}
