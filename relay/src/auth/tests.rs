//! Unit tests of building a webhook's checks from its entry.

use super::*;
use serde_json::json;

fn build(entry: Value) -> Result<WebhookAuth, Vec<String>> {
    let Value::Object(map) = entry else {
        panic!("entry must be an object")
    };
    WebhookAuth::from_entry(&map, "webhooks.json: hook", &AuthBuildOptions::default())
}

#[test]
fn empty_auth_blocks_are_load_errors_r114() {
    for (key, value) in [
        ("hmac", json!({})),
        ("authorization", json!("")),
        ("authorization", json!("  ")),
        ("authorization", json!("Bearer ")),
        ("authorization", json!("bearer")),
        ("basic_auth", json!(null)),
        ("ip_whitelist", json!([])),
        ("jwt", json!({})),
    ] {
        let errors = build(json!({ key: value })).expect_err("empty block refused");
        assert!(
            errors.contains(&format!(
                "webhooks.json: hook.{key}: empty configuration; remove the key to disable this method"
            )),
            "{errors:?}"
        );
    }
}

#[test]
fn missing_required_keys_name_the_path() {
    let errors = build(json!({"hmac": {"header": "X-Sig"}})).expect_err("secret missing");
    assert_eq!(
        errors,
        vec!["webhooks.json: hook.hmac.secret: missing field".to_string()]
    );
}

#[test]
fn unsafe_algorithms_are_load_errors() {
    for entry in [
        json!({"jwt": {"secret": "s", "algorithm": "none"}}),
        json!({"jwt": {"secret": "s", "algorithm": "HS1"}}),
        json!({"oauth1": {"consumer_key": "k", "consumer_secret": "s", "signature_method": "RSA-SHA1"}}),
        json!({"oauth2": {"jwt_secret": "s", "jwt_algorithms": ["none"]}}),
    ] {
        assert!(build(entry).is_err());
    }
}

#[test]
fn invalid_cidr_is_a_load_error_r09() {
    let errors = build(json!({"ip_whitelist": ["10.0.0.0/24", "10.0.0.0/40"]})).expect_err("bad");
    assert_eq!(errors.len(), 1);
    assert!(errors[0].starts_with("webhooks.json: hook.ip_whitelist: "));
}

#[test]
fn preset_with_header_or_encoding_is_a_load_error() {
    let errors = build(json!({"hmac": {"preset": "github", "secret": "s", "header": "X"}}))
        .expect_err("refused");
    assert_eq!(
        errors,
        vec!["webhooks.json: hook.hmac.header: cannot be set together with preset".to_string()]
    );
    let errors = build(json!({"hmac": {"preset": "standard_webhooks", "secret": "whsec_!!!"}}))
        .expect_err("refused");
    assert!(errors[0].starts_with("webhooks.json: hook.hmac.secret: "));
}

#[test]
fn invalid_cleanup_mode_is_a_load_error_r131() {
    let errors = build(json!({"credential_cleanup": {"enabled": true, "mode": "scrub"}}))
        .expect_err("refused");
    assert_eq!(
        errors,
        vec![
            "webhooks.json: hook.credential_cleanup.mode: must be \"mask\" or \"remove\""
                .to_string()
        ]
    );
    let errors = build(json!({"credential_cleanup": {"enabled": true, "fields": "password"}}))
        .expect_err("refused");
    assert_eq!(
        errors,
        vec![
            "webhooks.json: hook.credential_cleanup.fields: expected a list of strings".to_string()
        ]
    );
    let auth = build(json!({})).expect("builds");
    assert!(auth.credential_cleanup().is_none());
}

#[test]
fn numbers_and_booleans_may_be_strings() {
    let auth = build(json!({
        "rate_limit": {"max_requests": "5", "window_seconds": "60"},
        "header_auth": {"api_key": "k", "case_sensitive": "yes"}
    }))
    .expect("lenient values");
    assert!(auth.has_authentication());
    let errors = build(json!({"rate_limit": {"max_requests": "five"}})).expect_err("bad");
    assert_eq!(
        errors,
        vec!["webhooks.json: hook.rate_limit.max_requests: expected an integer".to_string()]
    );
}

#[test]
fn errors_never_contain_secrets_r126() {
    let errors = build(json!({
        "jwt": {"secret": "topsecret-value", "algorithm": "RS256"},
        "basic_auth": {"username": "u", "password": 12345}
    }))
    .expect_err("refused");
    let all = errors.join("\n");
    assert!(!all.contains("topsecret-value"), "{all}");
    assert!(!all.contains("12345"), "{all}");
}

#[test]
fn unknown_keys_inside_blocks_are_warnings() {
    let auth = build(
        json!({"header_auth": {"api_key": "k", "colour": "red"}, "module": "webhook_connect"}),
    )
    .expect("builds");
    assert_eq!(
        auth.warnings(),
        ["webhooks.json: hook.header_auth.colour: unknown key, ignored".to_string()]
    );
}

#[test]
fn consumed_headers_follow_configured_methods_r131() {
    let auth = build(json!({
        "authorization": "Bearer t",
        "header_auth": {"api_key": "k", "header_name": "X-Gitlab-Token"},
        "hmac": {"preset": "github", "secret": "s"}
    }))
    .expect("builds");
    assert_eq!(
        auth.consumed,
        vec![
            http::header::AUTHORIZATION,
            HeaderName::from_static("x-gitlab-token")
        ]
    );
    let auth = build(json!({"authorization": "Bearer t", "strip_consumed_credentials": false}))
        .expect("builds");
    assert!(auth.consumed.is_empty());
}

#[test]
fn oauth2_endpoint_policy_is_checked_at_load_r136() {
    let errors = build(json!({"oauth2": {"introspection_endpoint": "http://idp.example.com/i"}}))
        .expect_err("http refused");
    assert!(errors[0].contains("https://"), "{errors:?}");
    let errors = build(json!({"oauth2": {"introspection_endpoint": "https://169.254.169.254/i"}}))
        .expect_err("metadata refused");
    assert!(errors[0].contains("allowed_hosts"), "{errors:?}");
    assert!(
        build(json!({"oauth2": {
            "introspection_endpoint": "http://127.0.0.1:9/i", "allowed_hosts": ["127.0.0.1"]
        }}))
        .is_ok()
    );
    let errors = build(json!({"oauth2": {}})).expect_err("empty");
    assert_eq!(errors.len(), 1);
    let errors = build(json!({"oauth2": {"token_type": "Bearer"}})).expect_err("no mode");
    assert!(
        errors[0].contains("one of introspection_endpoint"),
        "{errors:?}"
    );
}

#[test]
fn json_schema_requires_json_data_type() {
    let errors = build(json!({"data_type": "blob", "json_schema": {"type": "object"}}))
        .expect_err("refused");
    assert_eq!(
        errors,
        vec!["webhooks.json: hook.json_schema: requires data_type \"json\"".to_string()]
    );
}
