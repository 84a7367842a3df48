//! Signature presets verified with published samples where reproducible, otherwise with
//! signatures computed by the documented algorithm (§3.2, R-130).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;

use crate::auth_support::*;

/// GitHub's documented example ("Validating webhook deliveries"): secret
/// `It's a Secret to Everybody`, payload `Hello, World!`.
#[tokio::test]
async fn github_published_sample_verifies_r130() {
    let auth = build(json!({"hmac": {"preset": "github", "secret": "It's a Secret to Everybody"}}));
    let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    let req = Req::post("/w")
        .header("X-Hub-Signature-256", sig)
        .body(b"Hello, World!");
    let pass = auth_now(&auth, &req)
        .await
        .expect("published sample verifies");
    assert!(
        pass.consumed_headers.is_empty(),
        "signature header kept (R-131)"
    );
    assert_401(
        auth_now(&auth, &req.clone().body(b"Hello, World?")).await,
        "Invalid HMAC signature",
    );
    assert_401(
        auth_now(
            &auth,
            &Req::post("/w")
                .header("X-Hub-Signature-256", &sig[7..])
                .body(b"Hello, World!"),
        )
        .await,
        "Invalid signature header format",
    );
    assert_401(
        auth_now(&auth, &Req::post("/w").body(b"Hello, World!")).await,
        "Missing X-Hub-Signature-256 header",
    );
}

/// Slack's documented example ("Verifying requests from Slack").
#[tokio::test]
async fn slack_published_sample_verifies_r130() {
    let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    let auth =
        build(json!({"hmac": {"preset": "slack", "secret": "8f742231b10e8888abcd99yyyzzz85a5"}}));
    let req = Req::post("/w")
        .header("X-Slack-Request-Timestamp", "1531420618")
        .header(
            "X-Slack-Signature",
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
        )
        .body(body);
    assert!(auth_at(&auth, &req, at(1531420618 + 60)).await.is_ok());
    assert_401(
        auth_at(&auth, &req, at(1531420618 + 301)).await,
        "Timestamp outside tolerance",
    );
    let mut changed = body.to_vec();
    changed[0] = b'T';
    assert_401(
        auth_at(&auth, &req.clone().body(&changed), at(1531420618)).await,
        "Invalid HMAC signature",
    );
    assert_401(
        auth_at(
            &auth,
            &Req::post("/w")
                .header("X-Slack-Request-Timestamp", "soon")
                .header("X-Slack-Signature", "v0=00"),
            at(1531420618),
        )
        .await,
        "Invalid signature header format",
    );
    assert_401(
        auth_at(
            &auth,
            &Req::post("/w").header("X-Slack-Signature", "v0=00"),
            at(1),
        )
        .await,
        "Missing X-Slack-Request-Timestamp header",
    );
}

/// The Standard Webhooks reference test vector.
#[tokio::test]
async fn standard_webhooks_published_sample_verifies_r130() {
    let auth = build(json!({"hmac": {
        "preset": "standard_webhooks", "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    }}));
    let req = Req::post("/w")
        .header("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek")
        .header("webhook-timestamp", "1614265330")
        .header(
            "webhook-signature",
            "v1a,AAAA v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        )
        .body(br#"{"test": 2432232314}"#);
    assert!(auth_at(&auth, &req, at(1614265330)).await.is_ok());
    assert_401(
        auth_at(&auth, &req, at(1614265330 - 301)).await,
        "Timestamp outside tolerance",
    );
    assert_401(
        auth_at(
            &auth,
            &req.clone().body(br#"{"test": 2432232315}"#),
            at(1614265330),
        )
        .await,
        "Invalid HMAC signature",
    );
    assert_401(
        auth_at(&auth, &Req::post("/w").header("webhook-id", "x"), at(1)).await,
        "Missing webhook-timestamp header",
    );
}

fn stripe_header(secret: &str, t: u64, body: &[u8]) -> String {
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(body);
    format!(
        "t={t},v1={},v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39",
        hex(&hmac_sha256(secret.as_bytes(), &signed))
    )
}

/// Stripe: signature computed with the documented scheme (`t.body`, HMAC-SHA256, hex, key =
/// the whole `whsec_…` string).
#[tokio::test]
async fn stripe_computed_signature_verifies_with_tolerance_r130() {
    let secret = "whsec_test_secret";
    let auth = build(json!({"hmac": {"preset": "stripe", "secret": secret}}));
    let body = br#"{"id":"evt_1","type":"charge.succeeded"}"#;
    let t = now_unix();
    let header = stripe_header(secret, t, body);
    let req = Req::post("/w")
        .header("Stripe-Signature", &header)
        .body(body);
    assert!(auth_now(&auth, &req).await.is_ok());
    // Any matching v1 passes; other v1 entries and versions are ignored.
    let two = format!(
        "t={t},v1=00ff,{}",
        &header[header.find("v1=").unwrap_or(0)..]
    );
    assert!(
        auth_now(
            &auth,
            &Req::post("/w").header("Stripe-Signature", &two).body(body)
        )
        .await
        .is_ok()
    );
    let old = stripe_header(secret, t - 301, body);
    assert_401(
        auth_now(
            &auth,
            &Req::post("/w").header("Stripe-Signature", &old).body(body),
        )
        .await,
        "Timestamp outside tolerance",
    );
    assert_401(
        auth_now(
            &auth,
            &req.clone()
                .body(br#"{"id":"evt_2","type":"charge.succeeded"}"#),
        )
        .await,
        "Invalid HMAC signature",
    );
    for bad in ["v1=abcd", "t=1,t=2,v1=ab", "t=abc,v1=ab", "garbage"] {
        assert_401(
            auth_now(
                &auth,
                &Req::post("/w").header("Stripe-Signature", bad).body(body),
            )
            .await,
            "Invalid signature header format",
        );
    }
    // A tolerance of 0 disables the timestamp check.
    let auth = build(
        json!({"hmac": {"preset": "stripe", "secret": secret, "timestamp_tolerance_seconds": 0}}),
    );
    assert!(
        auth_now(
            &auth,
            &Req::post("/w").header("Stripe-Signature", &old).body(body)
        )
        .await
        .is_ok()
    );
}

/// Shopify: base64 HMAC-SHA256 of the body, computed as documented.
#[tokio::test]
async fn shopify_computed_signature_verifies_r130() {
    let auth = build(json!({"hmac": {"preset": "shopify", "secret": "shpss_x"}}));
    let body = br#"{"id":820982911946154508,"email":"jon@example.com"}"#;
    let sig = STANDARD.encode(hmac_sha256(b"shpss_x", body));
    assert!(
        auth_now(
            &auth,
            &Req::post("/w")
                .header("X-Shopify-Hmac-Sha256", &sig)
                .body(body)
        )
        .await
        .is_ok()
    );
    assert_401(
        auth_now(
            &auth,
            &Req::post("/w")
                .header("X-Shopify-Hmac-Sha256", &sig)
                .body(b"{}"),
        )
        .await,
        "Invalid HMAC signature",
    );
    assert_401(
        auth_now(
            &auth,
            &Req::post("/w")
                .header("X-Shopify-Hmac-Sha256", "%%%")
                .body(body),
        )
        .await,
        "Invalid HMAC signature format (must be base64)",
    );
}
