//! `jwt` (§2.4, R-135) and the JWS verification shared with `oauth2`'s JWT mode.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};

use super::rejection::Rejection;

/// An algorithm of the whitelist (`none`, `HS1`, `MD5` and others are load errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JwsAlg {
    /// Verified by `jsonwebtoken`.
    Std(Algorithm),
    /// ECDSA P-521 with SHA-512, verified with `p521` (not supported by `jsonwebtoken`).
    Es512,
}

impl JwsAlg {
    /// The JWS `alg` name.
    pub fn name(self) -> &'static str {
        match self {
            JwsAlg::Es512 => "ES512",
            JwsAlg::Std(a) => match a {
                Algorithm::HS256 => "HS256",
                Algorithm::HS384 => "HS384",
                Algorithm::HS512 => "HS512",
                Algorithm::RS256 => "RS256",
                Algorithm::RS384 => "RS384",
                Algorithm::RS512 => "RS512",
                Algorithm::ES256 => "ES256",
                Algorithm::ES384 => "ES384",
                Algorithm::PS256 => "PS256",
                Algorithm::PS384 => "PS384",
                Algorithm::PS512 => "PS512",
                Algorithm::EdDSA => "EdDSA",
            },
        }
    }

    /// True for the HMAC family.
    pub fn is_hmac(self) -> bool {
        matches!(
            self,
            JwsAlg::Std(Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
        )
    }
}

/// Parses a whitelisted algorithm name, ignoring letter case.
pub(crate) fn parse_algorithm(text: &str) -> Option<JwsAlg> {
    Some(JwsAlg::Std(match text.to_ascii_uppercase().as_str() {
        "HS256" => Algorithm::HS256,
        "HS384" => Algorithm::HS384,
        "HS512" => Algorithm::HS512,
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "ES512" => return Some(JwsAlg::Es512),
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        _ => return None,
    }))
}

/// The verification keys for one configured secret: the HMAC key, and the public key when the
/// secret is a PEM key. A PEM secret is never used as an HMAC key (algorithm confusion, R-135).
pub(crate) struct JwtKeys {
    hmac: Option<DecodingKey>,
    rsa: Option<DecodingKey>,
    ec: Option<DecodingKey>,
    p521: Option<p521::ecdsa::VerifyingKey>,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtKeys(***)")
    }
}

impl JwtKeys {
    /// Builds keys for `algorithms`; the error never includes the secret.
    pub fn new(secret: &str, algorithms: &[JwsAlg]) -> Result<Self, String> {
        let is_pem = secret.trim_start().starts_with("-----BEGIN");
        let mut keys = JwtKeys {
            hmac: None,
            rsa: None,
            ec: None,
            p521: None,
        };
        for &alg in algorithms {
            if alg.is_hmac() {
                if !is_pem {
                    keys.hmac = Some(DecodingKey::from_secret(secret.as_bytes()));
                }
                continue;
            }
            if !is_pem {
                return Err(format!("{} needs a PEM public key", alg.name()));
            }
            match alg {
                JwsAlg::Es512 => {
                    use p521::pkcs8::DecodePublicKey;
                    let pk = p521::PublicKey::from_public_key_pem(secret.trim())
                        .map_err(|_| "invalid PEM P-521 public key".to_string())?;
                    keys.p521 = Some(
                        p521::ecdsa::VerifyingKey::from_affine(*pk.as_affine())
                            .map_err(|_| "invalid PEM P-521 public key".to_string())?,
                    );
                }
                JwsAlg::Std(Algorithm::ES256 | Algorithm::ES384) => {
                    keys.ec = Some(
                        DecodingKey::from_ec_pem(secret.as_bytes())
                            .map_err(|_| "invalid PEM EC public key".to_string())?,
                    );
                }
                JwsAlg::Std(_) => {
                    keys.rsa = Some(
                        DecodingKey::from_rsa_pem(secret.as_bytes())
                            .map_err(|_| "invalid PEM RSA public key".to_string())?,
                    );
                }
            }
        }
        Ok(keys)
    }

    /// Verifies `signature_b64` (base64url) over `message` with `alg`.
    fn verify(&self, alg: JwsAlg, message: &[u8], signature_b64: &str) -> Result<bool, JwsError> {
        match alg {
            JwsAlg::Es512 => {
                use p521::ecdsa::signature::Verifier;
                let key = self.p521.as_ref().ok_or(JwsError::Algorithm)?;
                let raw = URL_SAFE_NO_PAD
                    .decode(signature_b64)
                    .map_err(|_| JwsError::Format)?;
                let Ok(sig) = p521::ecdsa::Signature::from_slice(&raw) else {
                    return Ok(false);
                };
                Ok(key.verify(message, &sig).is_ok())
            }
            JwsAlg::Std(a) => {
                let key = if alg.is_hmac() {
                    self.hmac.as_ref()
                } else if matches!(a, Algorithm::ES256 | Algorithm::ES384) {
                    self.ec.as_ref()
                } else {
                    self.rsa.as_ref()
                }
                .ok_or(JwsError::Algorithm)?;
                Ok(jsonwebtoken::crypto::verify(signature_b64, message, key, a).unwrap_or(false))
            }
        }
    }
}

/// Why a compact JWS failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JwsError {
    Format,
    Algorithm,
    Signature,
}

/// Verifies a compact JWS whose header `alg` is exactly one of `allowed` (by its canonical
/// name), and returns its claims object.
pub(crate) fn verify_jws(
    token: &str,
    allowed: &[JwsAlg],
    keys: &JwtKeys,
) -> Result<Map<String, Value>, JwsError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwsError::Format);
    };
    let header: Map<String, Value> = URL_SAFE_NO_PAD
        .decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(JwsError::Format)?;
    let claims: Map<String, Value> = URL_SAFE_NO_PAD
        .decode(p)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(JwsError::Format)?;
    if URL_SAFE_NO_PAD.decode(s).is_err() {
        return Err(JwsError::Format);
    }
    let alg_name = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(JwsError::Algorithm)?;
    let alg = allowed
        .iter()
        .copied()
        .find(|a| a.name() == alg_name)
        .ok_or(JwsError::Algorithm)?;
    let signing_input_len = h.len() + 1 + p.len();
    let message = &token.as_bytes()[..signing_input_len];
    match keys.verify(alg, message, s) {
        Ok(true) => Ok(claims),
        Ok(false) => Err(JwsError::Signature),
        Err(e) => Err(e),
    }
}

/// A numeric date claim (`exp`, `nbf`) as seconds; `Err` when present but not a number.
pub(crate) fn numeric_claim(claims: &Map<String, Value>, name: &str) -> Result<Option<f64>, ()> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v.as_f64().map(Some).ok_or(()),
    }
}

/// True when the `aud` claim (string or list) contains `expected`.
pub(crate) fn audience_matches(claims: &Map<String, Value>, expected: &str) -> bool {
    match claims.get("aud") {
        Some(Value::String(s)) => s == expected,
        Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(expected)),
        _ => false,
    }
}

#[derive(Debug)]
pub(crate) struct JwtMethod {
    pub algorithm: JwsAlg,
    pub keys: JwtKeys,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub verify_exp: bool,
    pub leeway: i64,
    pub required_claims: Vec<String>,
}

impl JwtMethod {
    pub fn check(&self, headers: &HeaderMap, now: i64) -> Result<(), Rejection> {
        let Some(value) = headers.get(http::header::AUTHORIZATION) else {
            return Err(Rejection::unauthorized("Missing Authorization header"));
        };
        let text = String::from_utf8_lossy(value.as_bytes());
        let token = match text.trim().split_once(' ') {
            Some((scheme, token))
                if scheme.eq_ignore_ascii_case("bearer")
                    && !token.is_empty()
                    && !token.contains(char::is_whitespace) =>
            {
                token
            }
            _ => return Err(Rejection::unauthorized("JWT Bearer token required")),
        };
        let claims = verify_jws(token, &[self.algorithm], &self.keys).map_err(|e| {
            Rejection::unauthorized(match e {
                JwsError::Format => "Invalid JWT token format",
                JwsError::Algorithm => "Invalid JWT algorithm",
                JwsError::Signature => "Invalid JWT signature",
            })
        })?;
        let now_f = now as f64;
        let leeway = self.leeway as f64;
        let invalid = || Rejection::unauthorized("JWT validation failed");
        if self.verify_exp
            && let Some(exp) = numeric_claim(&claims, "exp").map_err(|()| invalid())?
            && now_f >= exp + leeway
        {
            return Err(Rejection::unauthorized("JWT token expired"));
        }
        if let Some(nbf) = numeric_claim(&claims, "nbf").map_err(|()| invalid())?
            && now_f + leeway < nbf
        {
            return Err(invalid());
        }
        if let Some(iss) = &self.issuer
            && claims.get("iss").and_then(Value::as_str) != Some(iss.as_str())
        {
            return Err(Rejection::unauthorized("Invalid JWT issuer"));
        }
        if let Some(aud) = &self.audience
            && !audience_matches(&claims, aud)
        {
            return Err(Rejection::unauthorized("Invalid JWT audience"));
        }
        for name in &self.required_claims {
            if !claims.contains_key(name) {
                return Err(Rejection::unauthorized(format!(
                    "JWT missing required claim: {name}"
                )));
            }
        }
        Ok(())
    }
}
