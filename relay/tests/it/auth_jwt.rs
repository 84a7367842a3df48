//! `jwt` and `oauth2` JWT mode (§2.4, §7.1, R-135).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

use crate::auth_keys::*;
use crate::auth_support::*;

fn hs(secret: &str, claims: &Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign")
}

fn rs(claims: &Value) -> String {
    let key = EncodingKey::from_rsa_pem(RSA_PRIVATE_PEM.as_bytes()).expect("rsa key");
    encode(&Header::new(Algorithm::RS256), claims, &key).expect("sign")
}

fn bearer(token: &str) -> Req {
    Req::post("/w").header("Authorization", &format!("Bearer {token}"))
}

#[tokio::test]
async fn jwt_hs256_passes_and_failures_have_exact_messages() {
    let now = 1_800_000_000u64;
    let auth = build(json!({"jwt": {
        "secret": "jwt-secret", "issuer": "iss-1", "audience": "aud-1",
        "required_claims": ["sub"], "leeway_seconds": 10
    }}));
    let good = json!({"sub": "x", "iss": "iss-1", "aud": ["aud-1", "other"], "exp": now + 60});
    let pass = auth_at(&auth, &bearer(&hs("jwt-secret", &good)), at(now))
        .await
        .expect("passes");
    assert_eq!(pass.consumed_headers, vec![http::header::AUTHORIZATION]);

    let cases: Vec<(Req, &str)> = vec![
        (Req::post("/w"), "Missing Authorization header"),
        (
            Req::post("/w").header(
                "Authorization",
                &format!("Token {}", hs("jwt-secret", &good)),
            ),
            "JWT Bearer token required",
        ),
        (bearer("a.b"), "Invalid JWT token format"),
        (bearer("!!.??.**"), "Invalid JWT token format"),
        (bearer(&hs("other-secret", &good)), "Invalid JWT signature"),
        (
            bearer(&hs(
                "jwt-secret",
                &json!({"sub": "x", "iss": "iss-1", "aud": "aud-1", "exp": now - 11}),
            )),
            "JWT token expired",
        ),
        (
            bearer(&hs(
                "jwt-secret",
                &json!({"sub": "x", "iss": "iss-1", "aud": "aud-1", "nbf": now + 11}),
            )),
            "JWT validation failed",
        ),
        (
            bearer(&hs(
                "jwt-secret",
                &json!({"sub": "x", "iss": "iss-2", "aud": "aud-1"}),
            )),
            "Invalid JWT issuer",
        ),
        (
            bearer(&hs(
                "jwt-secret",
                &json!({"sub": "x", "iss": "iss-1", "aud": "aud-2"}),
            )),
            "Invalid JWT audience",
        ),
        (
            bearer(&hs("jwt-secret", &json!({"iss": "iss-1", "aud": "aud-1"}))),
            "JWT missing required claim: sub",
        ),
    ];
    for (req, detail) in cases {
        assert_401(auth_at(&auth, &req, at(now)).await, detail);
    }
    // Within the leeway an expired token still passes.
    let within = json!({"sub": "x", "iss": "iss-1", "aud": "aud-1", "exp": now - 9});
    assert!(
        auth_at(&auth, &bearer(&hs("jwt-secret", &within)), at(now))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn jwt_rs256_and_es256_verify_with_pem_public_keys() {
    let auth = build(json!({"jwt": {"secret": RSA_PUBLIC_PEM, "algorithm": "RS256"}}));
    assert!(
        auth_now(&auth, &bearer(&rs(&json!({"sub": "a"}))))
            .await
            .is_ok()
    );

    let auth = build(json!({"jwt": {"secret": EC_PUBLIC_PEM, "algorithm": "es256"}}));
    let key = EncodingKey::from_ec_pem(EC_PRIVATE_PEM.as_bytes()).expect("ec key");
    let token = encode(&Header::new(Algorithm::ES256), &json!({"sub": "a"}), &key).expect("sign");
    assert!(auth_now(&auth, &bearer(&token)).await.is_ok());
}

#[tokio::test]
async fn jwt_algorithm_confusion_is_refused_r135() {
    let auth = build(json!({"jwt": {"secret": RSA_PUBLIC_PEM, "algorithm": "RS256"}}));
    // HS256 signed with the RSA public key as the HMAC secret.
    let forged = hs(RSA_PUBLIC_PEM, &json!({"sub": "attacker"}));
    assert_401(
        auth_now(&auth, &bearer(&forged)).await,
        "Invalid JWT algorithm",
    );
    // alg: none with an empty signature.
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(br#"{"sub":"attacker"}"#)
    );
    assert_401(
        auth_now(&auth, &bearer(&none)).await,
        "Invalid JWT algorithm",
    );
    // An HS256 configuration refuses an RS256 token too.
    let auth = build(json!({"jwt": {"secret": "s"}}));
    assert_401(
        auth_now(&auth, &bearer(&rs(&json!({})))).await,
        "Invalid JWT algorithm",
    );
}

#[tokio::test]
async fn oauth2_jwt_mode_checks_claims_scopes_and_refuses_confusion_r135() {
    let auth = build(json!({"oauth2": {
        "jwt_secret": RSA_PUBLIC_PEM, "audience": "api", "issuer": "idp",
        "required_scope": "read write"
    }}));
    let good = json!({"aud": "api", "iss": "idp", "scope": "read write admin"});
    assert!(auth_now(&auth, &bearer(&rs(&good))).await.is_ok());
    // Default algorithms include HS256, but never with a PEM key as the HMAC secret.
    assert_401(
        auth_now(&auth, &bearer(&hs(RSA_PUBLIC_PEM, &good))).await,
        "Invalid OAuth 2.0 JWT token",
    );
    assert_401(
        auth_now(
            &auth,
            &bearer(&rs(&json!({"aud": "api", "iss": "idp", "scp": ["read"]}))),
        )
        .await,
        "OAuth 2.0 token missing required scope",
    );
    assert_401(
        auth_now(
            &auth,
            &bearer(&rs(
                &json!({"aud": "x", "iss": "idp", "scope": "read write"}),
            )),
        )
        .await,
        "OAuth 2.0 token audience mismatch",
    );
    assert_401(
        auth_now(
            &auth,
            &bearer(&rs(
                &json!({"aud": "api", "iss": "x", "scope": "read write"}),
            )),
        )
        .await,
        "OAuth 2.0 token issuer mismatch",
    );
    assert_401(
        auth_now(
            &auth,
            &bearer(&rs(
                &json!({"aud": "api", "iss": "idp", "scope": "read write", "exp": 1000}),
            )),
        )
        .await,
        "OAuth 2.0 token expired",
    );
    assert_401(
        auth_now(&auth, &Req::post("/w").header("Authorization", "MAC abc")).await,
        "OAuth 2.0 Bearer token required",
    );
    assert_401(
        auth_now(&auth, &Req::post("/w").header("Authorization", "Bearer ")).await,
        "Empty OAuth 2.0 token",
    );
}

#[tokio::test]
async fn oauth2_without_validation_accepts_any_present_token() {
    let auth = build(json!({"oauth2": {"validate_token": false}}));
    assert!(auth.warnings().iter().any(|w| w.contains("validate_token")));
    assert!(auth_now(&auth, &bearer("anything")).await.is_ok());
    assert_401(
        auth_now(&auth, &Req::post("/w")).await,
        "Missing Authorization header",
    );
}

/// ES512 (P-521 with SHA-512), which `jsonwebtoken` lacks, is verified with `p521`.
#[tokio::test]
async fn jwt_es512_verifies_and_refuses_tampering() {
    use p521::ecdsa::signature::RandomizedSigner;
    use p521::elliptic_curve::rand_core::{CryptoRng, Error, RngCore};
    use p521::pkcs8::{EncodePublicKey, LineEnding};

    /// A deterministic generator for the ECDSA nonce (test only).
    struct TestRng(u64);
    impl RngCore for TestRng {
        fn next_u32(&mut self) -> u32 {
            (self.next_u64() >> 32) as u32
        }
        fn next_u64(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            for b in dest {
                *b = self.next_u64() as u8;
            }
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), Error> {
            self.fill_bytes(dest);
            Ok(())
        }
    }
    impl CryptoRng for TestRng {}

    let mut scalar = [0x11u8; 66];
    scalar[0] = 0;
    let signing = p521::ecdsa::SigningKey::from_slice(&scalar).expect("scalar");
    let verifying = p521::ecdsa::VerifyingKey::from(&signing);
    let public = p521::PublicKey::from_affine(*verifying.as_affine()).expect("point");
    let pem = public.to_public_key_pem(LineEnding::LF).expect("pem");

    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"ES512","typ":"JWT"}"#);
    let claims = URL_SAFE_NO_PAD.encode(br#"{"sub":"a"}"#);
    let input = format!("{header}.{claims}");
    let sig: p521::ecdsa::Signature =
        signing.sign_with_rng(&mut TestRng(0x9e37_79b9_7f4a_7c15), input.as_bytes());
    let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()));

    let auth = build(json!({"jwt": {"secret": pem, "algorithm": "ES512"}}));
    assert!(auth_now(&auth, &bearer(&token)).await.is_ok());
    let tampered = format!(
        "{header}.{}.{}",
        URL_SAFE_NO_PAD.encode(br#"{"sub":"b"}"#),
        URL_SAFE_NO_PAD.encode(sig.to_bytes())
    );
    assert_401(
        auth_now(&auth, &bearer(&tampered)).await,
        "Invalid JWT signature",
    );
    // An ES256 token on the ES512 configuration is an algorithm mismatch.
    let key = EncodingKey::from_ec_pem(EC_PRIVATE_PEM.as_bytes()).expect("ec key");
    let es256 = encode(&Header::new(Algorithm::ES256), &json!({"sub": "a"}), &key).expect("sign");
    assert_401(
        auth_now(&auth, &bearer(&es256)).await,
        "Invalid JWT algorithm",
    );
}
