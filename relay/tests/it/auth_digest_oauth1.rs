//! Digest (§2.3, R-129) and OAuth 1.0 (§7.2, R-128) including replay.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use md5::{Digest, Md5};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::json;

use crate::auth_support::*;

fn md5_hex(s: &str) -> String {
    hex(&Md5::digest(s.as_bytes()))
}

fn digest_header(uri: &str, nonce: &str, nc: &str, cnonce: &str, password: &str) -> String {
    let ha1 = md5_hex(&format!("alice:Webhook API:{password}"));
    let ha2 = md5_hex(&format!("POST:{uri}"));
    let response = md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
    format!(
        r#"Digest username="alice", realm="Webhook API", nonce="{nonce}", uri="{uri}", qop=auth, nc={nc}, cnonce="{cnonce}", response="{response}", algorithm=MD5"#
    )
}

#[tokio::test]
async fn digest_passes_and_replay_is_refused_with_challenge_r129() {
    let auth = build(json!({"digest_auth": {
        "username": "alice", "password": "wonder", "require_server_nonce": false
    }}));
    let uri = "/webhook/h?x=1";
    let h = digest_header(uri, "n1", "00000001", "c1", "wonder");
    let req = Req::post(uri).header("Authorization", &h);
    let pass = auth_now(&auth, &req).await.expect("passes");
    assert_eq!(pass.consumed_headers, vec![http::header::AUTHORIZATION]);

    let replay = auth_now(&auth, &req).await.expect_err("replay refused");
    assert_eq!(
        (replay.status.as_u16(), replay.detail.as_str()),
        (401, "Digest nonce reused")
    );
    let challenge = replay
        .headers
        .iter()
        .find(|(n, _)| n == http::header::WWW_AUTHENTICATE)
        .and_then(|(_, v)| v.to_str().ok())
        .expect("challenge");
    assert!(
        challenge.starts_with(r#"Digest realm="Webhook API", qop="auth", algorithm=MD5, nonce=""#),
        "{challenge}"
    );
    // A new nc for the same nonce is a new request.
    let h2 = digest_header(uri, "n1", "00000002", "c1", "wonder");
    assert!(
        auth_now(&auth, &Req::post(uri).header("Authorization", &h2))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn digest_failures_have_exact_messages_and_challenges_r129() {
    let auth = build(json!({"digest_auth": {
        "username": "alice", "password": "wonder", "require_server_nonce": false
    }}));
    let uri = "/webhook/h";
    let cases = [
        (Req::post(uri), "Missing Authorization header"),
        (
            Req::post(uri).header("Authorization", "Basic YTpi"),
            "Digest authentication required",
        ),
        (
            Req::post(uri).header(
                "Authorization",
                r#"Digest username="alice", realm="Webhook API", nonce="n", uri="/webhook/h""#,
            ),
            "Missing required Digest parameter: response",
        ),
        (
            Req::post(uri).header(
                "Authorization",
                &digest_header("/other", "n2", "00000001", "c", "wonder"),
            ),
            "Invalid digest auth uri",
        ),
        (
            Req::post(uri).header(
                "Authorization",
                &digest_header(uri, "n3", "00000001", "c", "wrong"),
            ),
            "Invalid digest auth response",
        ),
        (
            Req::post(uri).header(
                "Authorization",
                &digest_header(uri, "n4", "00000001", "c", "wonder").replace("alice", "bob"),
            ),
            "Invalid digest auth username",
        ),
        (
            Req::post(uri).header(
                "Authorization",
                &digest_header(uri, "n5", "00000001", "c", "wonder")
                    .replace("algorithm=MD5", "algorithm=SHA-512"),
            ),
            "Invalid digest auth algorithm: SHA-512",
        ),
    ];
    for (req, detail) in cases {
        let r = auth_now(&auth, &req).await.expect_err("refused");
        assert_eq!((r.status.as_u16(), r.detail.as_str()), (401, detail));
        assert!(
            r.headers
                .iter()
                .any(|(n, _)| n == http::header::WWW_AUTHENTICATE),
            "every digest 401 carries a challenge"
        );
    }
}

#[tokio::test]
async fn digest_with_required_server_nonce_accepts_only_issued_nonces() {
    let auth = build(json!({"digest_auth": {
        "username": "alice", "password": "wonder", "require_server_nonce": true
    }}));
    let uri = "/webhook/h";
    let r = auth_now(
        &auth,
        &Req::post(uri).header(
            "Authorization",
            &digest_header(uri, "made-up", "00000001", "c", "wonder"),
        ),
    )
    .await
    .expect_err("foreign nonce refused");
    assert_eq!(r.detail, "Digest nonce invalid or expired");
    let challenge = r
        .headers
        .iter()
        .find_map(|(n, v)| {
            (n == http::header::WWW_AUTHENTICATE)
                .then(|| v.to_str().ok())
                .flatten()
        })
        .expect("challenge")
        .to_string();
    let nonce = challenge
        .split("nonce=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("nonce in challenge");
    let h = digest_header(uri, nonce, "00000001", "c", "wonder");
    assert!(
        auth_now(&auth, &Req::post(uri).header("Authorization", &h))
            .await
            .is_ok()
    );
}

const OAUTH_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn enc(s: &str) -> String {
    utf8_percent_encode(s, OAUTH_ENCODE).to_string()
}

/// A standard OAuth 1.0 HMAC-SHA1 signer, written from RFC 5849 independently of the relay:
/// the base URI from the full URL, and every oauth and query parameter.
pub(crate) fn oauth1_header(url: &str, nonce: &str, ts: u64, secret: &str) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut params: Vec<(String, String)> = vec![
        ("oauth_consumer_key".into(), "ck".into()),
        ("oauth_nonce".into(), nonce.into()),
        ("oauth_signature_method".into(), "HMAC-SHA1".into()),
        ("oauth_timestamp".into(), ts.to_string()),
        ("oauth_version".into(), "1.0".into()),
    ];
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let dec = |s: &str| {
            percent_encoding::percent_decode_str(&s.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        };
        params.push((dec(k), dec(v)));
    }
    let mut encoded: Vec<(String, String)> = params.iter().map(|(k, v)| (enc(k), enc(v))).collect();
    encoded.sort();
    let normalized: Vec<String> = encoded.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let base_string = format!("POST&{}&{}", enc(base), enc(&normalized.join("&")));
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<sha1::Sha1> as Mac>::new_from_slice(format!("{}&", enc(secret)).as_bytes())
        .expect("key");
    mac.update(base_string.as_bytes());
    let sig = STANDARD.encode(mac.finalize().into_bytes());
    let oauth: Vec<String> = params
        .iter()
        .filter(|(k, _)| k.starts_with("oauth_"))
        .map(|(k, v)| format!("{}=\"{}\"", enc(k), enc(v)))
        .collect();
    format!(
        "OAuth realm=\"x\", {}, oauth_signature=\"{}\"",
        oauth.join(", "),
        enc(&sig)
    )
}

#[tokio::test]
async fn oauth1_standard_signature_with_query_verifies_and_replay_fails_r128() {
    let auth = build(json!({"oauth1": {"consumer_key": "ck", "consumer_secret": "cs&secret"}}));
    let now = now_unix();
    let url = "https://relay.example.com/webhook/h?b=2+x&a=%C3%A9&a=1";
    let req = Req::post("/webhook/h?b=2+x&a=%C3%A9&a=1")
        .full_url(url)
        .header(
            "Authorization",
            &oauth1_header(url, "nonce-1", now, "cs&secret"),
        );
    let pass = auth_now(&auth, &req)
        .await
        .expect("standard client verifies");
    assert_eq!(pass.consumed_headers, vec![http::header::AUTHORIZATION]);
    assert_401(auth_now(&auth, &req).await, "OAuth 1.0 nonce already used");

    // Dropping a query parameter breaks the signature.
    let tampered = Req::post("/webhook/h?b=2+x&a=1")
        .full_url("https://relay.example.com/webhook/h?b=2+x&a=1")
        .header(
            "Authorization",
            &oauth1_header(url, "nonce-2", now, "cs&secret"),
        );
    assert_401(
        auth_now(&auth, &tampered).await,
        "Invalid OAuth 1.0 signature",
    );
}

#[tokio::test]
async fn oauth1_failures_have_exact_messages() {
    let auth = build(
        json!({"oauth1": {"consumer_key": "ck", "consumer_secret": "cs", "timestamp_window": 300}}),
    );
    let now = 1_800_000_000u64;
    let url = "https://relay.example.com/webhook/h";
    let with = |h: &str| {
        Req::post("/webhook/h")
            .full_url(url)
            .header("Authorization", h)
    };
    let good = oauth1_header(url, "n", now, "cs");
    assert!(auth_at(&auth, &with(&good), at(now)).await.is_ok());
    assert_401(
        auth_at(&auth, &Req::post("/webhook/h"), at(now)).await,
        "Missing Authorization header",
    );
    assert_401(
        auth_at(&auth, &with("Bearer x"), at(now)).await,
        "OAuth 1.0 authentication required",
    );
    assert_401(
        auth_at(
            &auth,
            &with(r#"OAuth oauth_consumer_key="ck", oauth_signature="x""#),
            at(now),
        )
        .await,
        "Missing required OAuth 1.0 parameter: oauth_signature_method",
    );
    assert_401(
        auth_at(&auth, &with(&good.replace("\"ck\"", "\"other\"")), at(now)).await,
        "Invalid OAuth 1.0 consumer key",
    );
    assert_401(
        auth_at(
            &auth,
            &with(&good.replace("HMAC-SHA1", "PLAINTEXT")),
            at(now),
        )
        .await,
        "Invalid OAuth 1.0 signature method: PLAINTEXT",
    );
    assert_401(
        auth_at(
            &auth,
            &with(&oauth1_header(url, "n2", now - 301, "cs")),
            at(now),
        )
        .await,
        "OAuth 1.0 timestamp out of window (diff: 301s, max: 300s)",
    );
    assert_401(
        auth_at(
            &auth,
            &with(&good.replace(
                &format!("oauth_timestamp=\"{now}\""),
                "oauth_timestamp=\"soon\"",
            )),
            at(now),
        )
        .await,
        "Invalid OAuth 1.0 timestamp",
    );
    assert_401(
        auth_at(
            &auth,
            &with(&good.replace(&format!("oauth_timestamp=\"{now}\", "), "")),
            at(now),
        )
        .await,
        "Missing required OAuth 1.0 parameter: oauth_timestamp",
    );
    assert_401(
        auth_at(&auth, &with(&oauth1_header(url, "", now, "cs")), at(now)).await,
        "Invalid OAuth 1.0 nonce format",
    );
    assert_401(
        auth_at(
            &auth,
            &with(&oauth1_header(url, "n3", now, "wrong")),
            at(now),
        )
        .await,
        "Invalid OAuth 1.0 signature",
    );
}

#[tokio::test]
async fn oauth1_full_nonce_cache_answers_503() {
    let entry = json!({"oauth1": {"consumer_key": "ck", "consumer_secret": "cs"}});
    let serde_json::Value::Object(map) = entry else {
        unreachable!()
    };
    let opts = webhook_relay::auth::AuthBuildOptions {
        nonce_cache_size: 1,
        ..Default::default()
    };
    let auth = webhook_relay::auth::WebhookAuth::from_entry(&map, "x", &opts).expect("builds");
    let now = 1_800_000_000u64;
    let url = "https://relay.example.com/webhook/h";
    let req = |n: &str| {
        Req::post("/webhook/h")
            .full_url(url)
            .header("Authorization", &oauth1_header(url, n, now, "cs"))
    };
    assert!(auth_at(&auth, &req("a"), at(now)).await.is_ok());
    let r = auth_at(&auth, &req("b"), at(now)).await.expect_err("full");
    assert_eq!(r.status.as_u16(), 503);
    assert_eq!(r.detail, "Server nonce storage full, please retry later");
    assert_eq!(r.retry_after(), Some(1));
}
