//! Randomised inputs to every local method's header parsers: no panic, only 401/503, and no
//! secret in any message (property tests; R-126).

use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::auth_keys::RSA_PUBLIC_PEM;
use crate::auth_support::*;

const SECRET: &str = "fuzz-secret-value";

fn random_value(rng: &mut rand::rngs::StdRng) -> String {
    const PIECES: [&str; 24] = [
        "Bearer ",
        "Basic ",
        "Digest ",
        "OAuth ",
        "t=",
        "v1=",
        "v0=",
        ",",
        "=",
        "\"",
        "\\",
        " ",
        "sha256=",
        "username=",
        "nonce=",
        "oauth_signature=",
        "%",
        "%2",
        "1700000000",
        "abc",
        "==",
        ".",
        "é",
        "v1,",
    ];
    let n = rng.random_range(0..12);
    (0..n)
        .map(|_| PIECES[rng.random_range(0..PIECES.len())])
        .collect()
}

#[tokio::test]
async fn random_credential_headers_never_panic_and_never_leak() {
    let configs = [
        json!({"authorization": format!("Bearer {SECRET}")}),
        json!({"basic_auth": {"username": "u", "password": SECRET}}),
        json!({"digest_auth": {"username": "u", "password": SECRET}}),
        json!({"jwt": {"secret": SECRET}}),
        json!({"jwt": {"secret": RSA_PUBLIC_PEM, "algorithm": "PS256"}}),
        json!({"oauth1": {"consumer_key": "ck", "consumer_secret": SECRET}}),
        json!({"oauth2": {"jwt_secret": SECRET}}),
        json!({"header_auth": {"api_key": SECRET}}),
        json!({"query_auth": {"api_key": SECRET}}),
        json!({"hmac": {"secret": SECRET}}),
        json!({"hmac": {"secret": SECRET, "preset": "github"}}),
        json!({"hmac": {"secret": SECRET, "preset": "stripe"}}),
        json!({"hmac": {"secret": SECRET, "preset": "shopify"}}),
        json!({"hmac": {"secret": SECRET, "preset": "slack"}}),
        json!({"hmac": {"secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "preset": "standard_webhooks"}}),
    ];
    let auths: Vec<_> = configs.into_iter().map(build).collect();
    let headers = [
        "authorization",
        "x-api-key",
        "x-hmac-signature",
        "x-hub-signature-256",
        "stripe-signature",
        "x-shopify-hmac-sha256",
        "x-slack-signature",
        "x-slack-request-timestamp",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(1234);
    for _ in 0..3000 {
        let mut req = Req::post("/webhook/h?api_key=%ZZ&x=%C3%28");
        for name in headers {
            if rng.random_bool(0.6) {
                let v = random_value(&mut rng);
                if let Ok(value) = http::HeaderValue::from_str(&v) {
                    req.headers
                        .append(http::HeaderName::from_static(name), value);
                }
            }
        }
        req.body = (0..rng.random_range(0..16)).map(|_| rng.random()).collect();
        for auth in &auths {
            if let Err(r) = auth_at(auth, &req, at(1_700_000_000)).await {
                assert!(matches!(r.status.as_u16(), 401 | 503), "{r:?}");
                assert!(!r.detail.contains(SECRET), "{}", r.detail);
                for (_, v) in &r.headers {
                    assert!(
                        !v.as_bytes()
                            .windows(SECRET.len())
                            .any(|w| w == SECRET.as_bytes())
                    );
                }
            }
        }
    }
}
