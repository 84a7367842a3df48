//! Verifiers that call out: OAuth 2.0 introspection (§7.1, R-136) and reCAPTCHA (§9), against
//! local stand-in servers.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;

use crate::auth_support::*;

fn form(body: &str) -> HashMap<String, String> {
    form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect()
}

/// Serves `router` on 127.0.0.1:0 and returns the port.
async fn serve(router: Router) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    port
}

async fn introspection_server(calls: Arc<AtomicUsize>) -> u16 {
    let router = Router::new().route(
        "/introspect",
        post(move |headers: HeaderMap, body: String| {
            let calls = calls.clone();
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                let f = form(&body);
                assert_eq!(
                    f.get("token_type_hint").map(String::as_str),
                    Some("access_token")
                );
                let authed = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.starts_with("Basic "));
                let token = f.get("token").cloned().unwrap_or_default();
                let r: Response = match token.as_str() {
                    "good" if authed => {
                        axum::Json(json!({"active": true, "scope": "read write"})).into_response()
                    }
                    "listscope" => axum::Json(json!({"active": true, "scope": ["read", "write"]}))
                        .into_response(),
                    "noscope" => {
                        axum::Json(json!({"active": true, "scope": "read"})).into_response()
                    }
                    "boom" => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
                    "html" => "<html>hi</html>".into_response(),
                    _ => axum::Json(json!({"active": false})).into_response(),
                };
                r
            }
        }),
    );
    serve(router).await
}

fn bearer(token: &str) -> Req {
    Req::post("/w").header("Authorization", &format!("Bearer {token}"))
}

#[tokio::test]
async fn oauth2_introspection_outcomes_and_cache() {
    let calls = Arc::new(AtomicUsize::new(0));
    let port = introspection_server(calls.clone()).await;
    let auth = build(json!({"oauth2": {
        "introspection_endpoint": format!("http://127.0.0.1:{port}/introspect"),
        "allowed_hosts": ["127.0.0.1"],
        "client_id": "relay", "client_secret": "relay-secret",
        "required_scope": ["read", "write"]
    }}));
    let pass = auth_now(&auth, &bearer("good"))
        .await
        .expect("active token passes");
    assert_eq!(pass.consumed_headers, vec![http::header::AUTHORIZATION]);
    assert!(auth_now(&auth, &bearer("good")).await.is_ok());
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "second check served from the cache"
    );
    assert!(auth_now(&auth, &bearer("listscope")).await.is_ok());

    assert_401(
        auth_now(&auth, &bearer("inactive")).await,
        "OAuth 2.0 token is not active",
    );
    assert_401(
        auth_now(&auth, &bearer("noscope")).await,
        "OAuth 2.0 token missing required scope",
    );
    for token in ["boom", "html"] {
        let r = auth_now(&auth, &bearer(token))
            .await
            .expect_err("unavailable");
        assert_eq!(r.status.as_u16(), 503);
        assert_eq!(r.detail, "OAuth 2.0 token introspection unavailable");
        assert_eq!(r.retry_after(), Some(5));
    }
}

#[tokio::test]
async fn oauth2_unreachable_endpoint_answers_503() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let auth = build(json!({"oauth2": {
        "introspection_endpoint": format!("http://127.0.0.1:{port}/introspect"),
        "allowed_hosts": ["127.0.0.1"]
    }}));
    let r = auth_now(&auth, &bearer("t"))
        .await
        .expect_err("unavailable");
    assert_eq!((r.status.as_u16(), r.retry_after()), (503, Some(5)));
}

#[tokio::test]
async fn oauth2_endpoint_resolving_to_loopback_is_refused_unless_allowed_r136() {
    let calls = Arc::new(AtomicUsize::new(0));
    let port = introspection_server(calls.clone()).await;
    // `localhost` resolves to a loopback address, which the policy refuses at resolution time.
    let auth = build(json!({"oauth2": {
        "introspection_endpoint": format!("https://localhost:{port}/introspect")
    }}));
    let r = auth_now(&auth, &bearer("good")).await.expect_err("refused");
    assert_eq!(r.status.as_u16(), 503);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "no request reached the private address"
    );
    // Listed in allowed_hosts (plain http allowed for it), the same host is reached.
    let auth = build(json!({"oauth2": {
        "introspection_endpoint": format!("http://localhost:{port}/introspect"),
        "allowed_hosts": ["localhost"]
    }}));
    assert_401(
        auth_now(&auth, &bearer("other")).await,
        "OAuth 2.0 token is not active",
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

async fn recaptcha_server() -> u16 {
    let router = Router::new().route(
        "/siteverify",
        post(|body: String| async move {
            let f = form(&body);
            assert_eq!(f.get("secret").map(String::as_str), Some("rc-secret"));
            let has_ip = f.contains_key("remoteip");
            let r: Response = match f.get("response").map(String::as_str) {
                Some("ok") if has_ip => axum::Json(json!({"success": true, "score": 0.9})).into_response(),
                Some("ok-v2") if !has_ip => axum::Json(json!({"success": true})).into_response(),
                Some("low") => axum::Json(json!({"success": true, "score": 0.333})).into_response(),
                Some("nocodes") => axum::Json(json!({"success": false})).into_response(),
                Some("boom") => StatusCode::BAD_GATEWAY.into_response(),
                _ => axum::Json(json!({"success": false, "error-codes": ["invalid-input-response", "timeout-or-duplicate"]}))
                    .into_response(),
            };
            r
        }),
    );
    serve(router).await
}

#[tokio::test]
async fn recaptcha_v3_header_token_verifies_against_configured_url() {
    let port = recaptcha_server().await;
    let auth = build(json!({"recaptcha": {
        "secret_key": "rc-secret", "verify_url": format!("http://127.0.0.1:{port}/siteverify")
    }}));
    let req = |t: &str| Req::post("/w").header("X-Recaptcha-Token", t);
    let pass = auth_now(&auth, &req("ok")).await.expect("passes");
    assert_eq!(
        pass.consumed_headers,
        vec![http::HeaderName::from_static("x-recaptcha-token")]
    );
    assert_401(
        auth_now(&auth, &req("low")).await,
        "reCAPTCHA score 0.33 below threshold 0.5",
    );
    assert_401(
        auth_now(&auth, &req("bad")).await,
        "reCAPTCHA verification failed: invalid-input-response, timeout-or-duplicate",
    );
    assert_401(
        auth_now(&auth, &req("nocodes")).await,
        "reCAPTCHA verification failed: Verification failed",
    );
    let r = auth_now(&auth, &req("boom"))
        .await
        .expect_err("unavailable");
    assert_eq!(
        (r.status.as_u16(), r.detail.as_str()),
        (503, "reCAPTCHA verification unavailable")
    );
    assert_eq!(r.retry_after(), Some(5));
    assert_401(
        auth_now(&auth, &Req::post("/w")).await,
        "Missing reCAPTCHA token (expected in header: X-Recaptcha-Token)",
    );
}

#[tokio::test]
async fn recaptcha_v2_body_token_is_read_from_default_fields() {
    let port = recaptcha_server().await;
    let auth = build(json!({"recaptcha": {
        "secret_key": "rc-secret", "version": "v2", "token_source": "body",
        "verify_url": format!("http://127.0.0.1:{port}/siteverify")
    }}));
    let pass = auth_now(
        &auth,
        &Req::post("/w").body(br#"{"g-recaptcha-response":"ok-v2","x":1}"#),
    )
    .await
    .expect("passes");
    assert!(pass.consumed_headers.is_empty());
    assert_401(
        auth_now(&auth, &Req::post("/w").body(br#"{"x":1}"#)).await,
        "Missing reCAPTCHA token (expected in body: recaptcha_token)",
    );
}

#[test]
fn recaptcha_verify_url_must_be_https_except_loopback() {
    let errors = try_build(json!({"recaptcha": {
        "secret_key": "s", "verify_url": "http://verify.example.com/siteverify"
    }}))
    .expect_err("refused");
    assert_eq!(
        errors,
        vec!["webhooks.json: hook.recaptcha.verify_url: must be an https:// URL".to_string()]
    );
}
