//! Header and query credentials, generic HMAC, method order and consumed headers (§2, §3.1,
//! §10.1).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;

use crate::auth_support::*;

#[tokio::test]
async fn authorization_bearer_passes_and_each_failure_has_its_message_r124() {
    let auth = build(json!({"authorization": "Bearer tok-123"}));
    let ok = auth_now(
        &auth,
        &Req::post("/webhook/h").header("Authorization", "Bearer tok-123"),
    )
    .await;
    assert_eq!(
        ok.expect("passes").consumed_headers,
        vec![http::header::AUTHORIZATION]
    );
    assert_401(
        auth_now(&auth, &Req::post("/webhook/h")).await,
        "Unauthorized",
    );
    assert_401(
        auth_now(
            &auth,
            &Req::post("/webhook/h").header("Authorization", "Bearer tok-124"),
        )
        .await,
        "Unauthorized",
    );
    assert_401(
        auth_now(
            &auth,
            &Req::post("/webhook/h").header("Authorization", "Basic tok-123"),
        )
        .await,
        "Invalid Bearer token format: must start with 'Bearer '",
    );
    assert_401(
        auth_now(
            &auth,
            &Req::post("/webhook/h").header("Authorization", "Bearer a b"),
        )
        .await,
        "Unauthorized",
    );
    assert_401(
        auth_now(
            &auth,
            &Req::post("/webhook/h").header("Authorization", "Bearer Bearer tok-123"),
        )
        .await,
        "Unauthorized",
    );
}

#[tokio::test]
async fn basic_auth_passes_and_fails_with_exact_messages() {
    let auth = build(json!({"basic_auth": {"username": "user", "password": "pw"}}));
    let good = format!("Basic {}", STANDARD.encode("user:pw"));
    assert!(
        auth_now(&auth, &Req::post("/w").header("Authorization", &good))
            .await
            .is_ok()
    );
    let wrong = format!("Basic {}", STANDARD.encode("user:px"));
    assert_401(
        auth_now(&auth, &Req::post("/w").header("Authorization", &wrong)).await,
        "Invalid credentials",
    );
    assert_401(
        auth_now(&auth, &Req::post("/w")).await,
        "Missing Authorization header",
    );
    assert_401(
        auth_now(&auth, &Req::post("/w").header("Authorization", "Basic abc")).await,
        "Invalid base64 encoding in Authorization header",
    );
    assert_401(
        auth_now(&auth, &Req::post("/w").header("Authorization", "Digest x")).await,
        "Basic authentication required",
    );
}

#[tokio::test]
async fn header_auth_gitlab_token_is_case_sensitive_and_consumed() {
    let auth = build(json!({"header_auth": {
        "api_key": "GlToken", "header_name": "X-Gitlab-Token", "case_sensitive": true
    }}));
    let pass = auth_now(&auth, &Req::post("/w").header("x-gitlab-token", "GlToken"))
        .await
        .expect("passes");
    assert_eq!(
        pass.consumed_headers,
        vec![http::HeaderName::from_static("x-gitlab-token")]
    );
    assert_401(
        auth_now(&auth, &Req::post("/w").header("x-gitlab-token", "gltoken")).await,
        "Invalid API key in header: X-Gitlab-Token",
    );
    assert_401(
        auth_now(&auth, &Req::post("/w")).await,
        "Missing required header: X-Gitlab-Token",
    );
}

#[tokio::test]
async fn query_auth_passes_and_consumes_nothing() {
    let auth = build(json!({"query_auth": {"api_key": "Key1", "parameter_name": "token"}}));
    let pass = auth_now(&auth, &Req::post("/webhook/h?token=key1"))
        .await
        .expect("passes");
    assert!(pass.consumed_headers.is_empty());
    assert_401(
        auth_now(&auth, &Req::post("/webhook/h?token=key2")).await,
        "Invalid API key in query parameter: token",
    );
    assert_401(
        auth_now(&auth, &Req::post("/webhook/h?token=a&token=b")).await,
        "Duplicate query parameter: token",
    );
    assert_401(
        auth_now(&auth, &Req::post("/webhook/h")).await,
        "Missing required query parameter: token",
    );
}

#[tokio::test]
async fn generic_hmac_hex_and_base64_verify_over_raw_body() {
    let body = b"{\"a\": 1}\n";
    let sig = hmac_sha256(b"shh", body);
    let auth = build(json!({"hmac": {"secret": "shh"}}));
    let hex_sig = hex(&sig);
    let pass = auth_now(
        &auth,
        &Req::post("/w")
            .header("X-HMAC-Signature", &hex_sig)
            .body(body),
    )
    .await
    .expect("passes");
    assert!(
        pass.consumed_headers.is_empty(),
        "signature headers are never consumed"
    );
    // An `sha256=` prefix in any letter case is accepted.
    let prefixed = format!("SHA256={hex_sig}");
    assert!(
        auth_now(
            &auth,
            &Req::post("/w")
                .header("X-HMAC-Signature", &prefixed)
                .body(body)
        )
        .await
        .is_ok()
    );
    assert_401(
        auth_now(
            &auth,
            &Req::post("/w")
                .header("X-HMAC-Signature", &hex_sig)
                .body(b"{\"a\": 2}\n"),
        )
        .await,
        "Invalid HMAC signature",
    );
    assert_401(
        auth_now(
            &auth,
            &Req::post("/w").header("X-HMAC-Signature", "xyz").body(body),
        )
        .await,
        "Invalid HMAC signature format (must be hexadecimal)",
    );
    assert_401(
        auth_now(&auth, &Req::post("/w").body(body)).await,
        "Missing X-HMAC-Signature header",
    );

    let auth = build(json!({"hmac": {"secret": "shh", "header": "X-Sig", "encoding": "base64"}}));
    let b64 = STANDARD.encode(&sig);
    assert!(
        auth_now(&auth, &Req::post("/w").header("x-sig", &b64).body(body))
            .await
            .is_ok()
    );
    assert_401(
        auth_now(&auth, &Req::post("/w").header("x-sig", "!!").body(body)).await,
        "Invalid HMAC signature format (must be base64)",
    );
}

#[tokio::test]
async fn github_legacy_sha1_uses_generic_form() {
    use hmac::{Hmac, Mac};
    let body = b"payload";
    let mut m = <Hmac<sha1::Sha1> as Mac>::new_from_slice(b"k").expect("key");
    m.update(body);
    let sig = format!("sha1={}", hex(&m.finalize().into_bytes()));
    let auth =
        build(json!({"hmac": {"secret": "k", "header": "X-Hub-Signature", "algorithm": "sha1"}}));
    assert!(
        auth_now(
            &auth,
            &Req::post("/w").header("X-Hub-Signature", &sig).body(body)
        )
        .await
        .is_ok()
    );
}

#[tokio::test]
async fn all_configured_methods_must_pass_in_spec_order() {
    let auth = build(json!({
        "header_auth": {"api_key": "k"},
        "authorization": "Bearer t",
        "basic_auth": {"username": "u", "password": "p"}
    }));
    // basic_auth runs first (§1.2), so a bearer header fails there.
    assert_401(
        auth_now(
            &auth,
            &Req::post("/w")
                .header("Authorization", "Bearer t")
                .header("X-API-Key", "k"),
        )
        .await,
        "Basic authentication required",
    );
    let auth = build(json!({"header_auth": {"api_key": "k"}, "authorization": "Bearer t"}));
    assert_401(
        auth_now(&auth, &Req::post("/w").header("Authorization", "Bearer t")).await,
        "Missing required header: X-API-Key",
    );
    let pass = auth_now(
        &auth,
        &Req::post("/w")
            .header("Authorization", "Bearer t")
            .header("X-API-Key", "k"),
    )
    .await
    .expect("both pass");
    assert_eq!(
        pass.consumed_headers,
        vec![
            http::header::AUTHORIZATION,
            http::HeaderName::from_static("x-api-key")
        ]
    );
}

#[tokio::test]
async fn failure_messages_never_contain_credentials_r126() {
    let auth = build(json!({
        "authorization": "Bearer expected-secret-token",
        "hmac": {"secret": "hmac-secret-value"}
    }));
    let presented = "Bearer presented-secret-token";
    let r = auth_now(&auth, &Req::post("/w").header("Authorization", presented)).await;
    let (_, detail) = failure(r);
    assert!(!detail.contains("secret-token"));
    let debug = format!("{auth:?}");
    assert!(!debug.contains("expected-secret-token"), "{debug}");
    assert!(!debug.contains("hmac-secret-value"), "{debug}");
}
