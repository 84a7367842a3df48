//! `hmac`: generic body signatures and the provider presets (§3, R-130).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName};
use sha1::Sha1;
use sha2::{Sha256, Sha512};
use webhook_connect_protocol::config_values::Secret;

use super::ct::ct_eq;
use super::rejection::Rejection;

/// The MAC hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HmacAlgorithm {
    Sha1,
    Sha256,
    Sha512,
}

impl HmacAlgorithm {
    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "sha1" => Some(HmacAlgorithm::Sha1),
            "sha256" => Some(HmacAlgorithm::Sha256),
            "sha512" => Some(HmacAlgorithm::Sha512),
            _ => None,
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            HmacAlgorithm::Sha1 => "sha1=",
            HmacAlgorithm::Sha256 => "sha256=",
            HmacAlgorithm::Sha512 => "sha512=",
        }
    }
}

/// HMAC over the concatenation of `parts`.
pub(crate) fn hmac(alg: HmacAlgorithm, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        for p in parts {
            mac.update(p);
        }
        mac.finalize().into_bytes().to_vec()
    }
    match alg {
        HmacAlgorithm::Sha1 => run::<Hmac<Sha1>>(key, parts),
        HmacAlgorithm::Sha256 => run::<Hmac<Sha256>>(key, parts),
        HmacAlgorithm::Sha512 => run::<Hmac<Sha512>>(key, parts),
    }
}

/// How the signature is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SigEncoding {
    Hex,
    Base64,
}

/// A provider preset (§3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Preset {
    Github,
    Stripe,
    Shopify,
    Slack,
    StandardWebhooks,
}

impl Preset {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "github" => Some(Preset::Github),
            "stripe" => Some(Preset::Stripe),
            "shopify" => Some(Preset::Shopify),
            "slack" => Some(Preset::Slack),
            "standard_webhooks" => Some(Preset::StandardWebhooks),
            _ => None,
        }
    }
}

#[derive(Debug)]
pub(crate) enum HmacKind {
    Generic {
        header: HeaderName,
        header_display: String,
        algorithm: HmacAlgorithm,
        encoding: SigEncoding,
    },
    Preset(Preset),
}

#[derive(Debug)]
pub(crate) struct HmacMethod {
    pub kind: HmacKind,
    /// The key bytes (for Standard Webhooks, the decoded secret).
    pub key: Secret,
    pub key_bytes_b64: Option<KeyBytes>,
    /// Seconds; 0 disables the check.
    pub tolerance: i64,
}

/// Decoded key bytes; `Debug` redacts them.
pub(crate) struct KeyBytes(pub Vec<u8>);

impl std::fmt::Debug for KeyBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

fn missing(header: &str) -> Rejection {
    Rejection::unauthorized(format!("Missing {header} header"))
}

fn bad_format() -> Rejection {
    Rejection::unauthorized("Invalid signature header format")
}

fn bad_signature() -> Rejection {
    Rejection::unauthorized("Invalid HMAC signature")
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// Parses a unix timestamp (an integer, nothing else).
fn parse_ts(text: &str) -> Option<i64> {
    if text.is_empty() || text.starts_with('+') {
        return None;
    }
    text.parse().ok()
}

impl HmacMethod {
    fn key(&self) -> &[u8] {
        match &self.key_bytes_b64 {
            Some(k) => &k.0,
            None => self.key.expose().as_bytes(),
        }
    }

    fn check_ts(&self, ts: i64, now: i64) -> Result<(), Rejection> {
        if self.tolerance > 0 && (now.saturating_sub(ts)).saturating_abs() > self.tolerance {
            return Err(Rejection::unauthorized("Timestamp outside tolerance"));
        }
        Ok(())
    }

    pub fn check(&self, headers: &HeaderMap, body: &[u8], now: i64) -> Result<(), Rejection> {
        match &self.kind {
            HmacKind::Generic {
                header,
                header_display,
                algorithm,
                encoding,
            } => {
                let value = headers
                    .get(header)
                    .map(|v| v.as_bytes().trim_ascii())
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| missing(header_display))?;
                let prefix = algorithm.prefix().as_bytes();
                let value = match value.get(..prefix.len()) {
                    Some(p) if p.eq_ignore_ascii_case(prefix) => &value[prefix.len()..],
                    _ => value,
                };
                let presented = match encoding {
                    SigEncoding::Hex => hex::decode(value).map_err(|_| {
                        Rejection::unauthorized(
                            "Invalid HMAC signature format (must be hexadecimal)",
                        )
                    })?,
                    SigEncoding::Base64 => STANDARD.decode(value).map_err(|_| {
                        Rejection::unauthorized("Invalid HMAC signature format (must be base64)")
                    })?,
                };
                let expected = hmac(*algorithm, self.key(), &[body]);
                if ct_eq(&presented, &expected) {
                    Ok(())
                } else {
                    Err(bad_signature())
                }
            }
            HmacKind::Preset(Preset::Github) => {
                let value = header_text(headers, "x-hub-signature-256")
                    .ok_or_else(|| missing("X-Hub-Signature-256"))?;
                let hex = match value.get(..7) {
                    Some(p) if p.eq_ignore_ascii_case("sha256=") => &value[7..],
                    _ => return Err(bad_format()),
                };
                let presented = hex::decode(hex.as_bytes()).map_err(|_| {
                    Rejection::unauthorized("Invalid HMAC signature format (must be hexadecimal)")
                })?;
                let expected = hmac(HmacAlgorithm::Sha256, self.key(), &[body]);
                if ct_eq(&presented, &expected) {
                    Ok(())
                } else {
                    Err(bad_signature())
                }
            }
            HmacKind::Preset(Preset::Shopify) => {
                let value = header_text(headers, "x-shopify-hmac-sha256")
                    .ok_or_else(|| missing("X-Shopify-Hmac-Sha256"))?;
                let presented = STANDARD.decode(value).map_err(|_| {
                    Rejection::unauthorized("Invalid HMAC signature format (must be base64)")
                })?;
                let expected = hmac(HmacAlgorithm::Sha256, self.key(), &[body]);
                if ct_eq(&presented, &expected) {
                    Ok(())
                } else {
                    Err(bad_signature())
                }
            }
            HmacKind::Preset(Preset::Stripe) => {
                let value = header_text(headers, "stripe-signature")
                    .ok_or_else(|| missing("Stripe-Signature"))?;
                let mut ts: Option<&str> = None;
                let mut ts_count = 0;
                let mut v1: Vec<&str> = Vec::new();
                for item in value.split(',') {
                    let (k, v) = item.split_once('=').ok_or_else(bad_format)?;
                    match k.trim() {
                        "t" => {
                            ts_count += 1;
                            ts = Some(v.trim());
                        }
                        "v1" => v1.push(v.trim()),
                        _ => {}
                    }
                }
                let ts_text = match ts {
                    Some(t) if ts_count == 1 && !v1.is_empty() => t,
                    _ => return Err(bad_format()),
                };
                let t = parse_ts(ts_text).ok_or_else(bad_format)?;
                self.check_ts(t, now)?;
                let expected = hmac(
                    HmacAlgorithm::Sha256,
                    self.key(),
                    &[ts_text.as_bytes(), b".", body],
                );
                let mut ok = false;
                for sig in v1 {
                    if let Ok(presented) = hex::decode(sig.as_bytes()) {
                        ok |= ct_eq(&presented, &expected);
                    }
                }
                if ok { Ok(()) } else { Err(bad_signature()) }
            }
            HmacKind::Preset(Preset::Slack) => {
                let sig = header_text(headers, "x-slack-signature")
                    .ok_or_else(|| missing("X-Slack-Signature"))?;
                let ts_text = header_text(headers, "x-slack-request-timestamp")
                    .ok_or_else(|| missing("X-Slack-Request-Timestamp"))?;
                let t = parse_ts(ts_text).ok_or_else(bad_format)?;
                let hex = sig.strip_prefix("v0=").ok_or_else(bad_format)?;
                self.check_ts(t, now)?;
                let presented = hex::decode(hex.as_bytes()).map_err(|_| {
                    Rejection::unauthorized("Invalid HMAC signature format (must be hexadecimal)")
                })?;
                let expected = hmac(
                    HmacAlgorithm::Sha256,
                    self.key(),
                    &[b"v0:", ts_text.as_bytes(), b":", body],
                );
                if ct_eq(&presented, &expected) {
                    Ok(())
                } else {
                    Err(bad_signature())
                }
            }
            HmacKind::Preset(Preset::StandardWebhooks) => {
                let id = header_text(headers, "webhook-id").ok_or_else(|| missing("webhook-id"))?;
                let ts_text = header_text(headers, "webhook-timestamp")
                    .ok_or_else(|| missing("webhook-timestamp"))?;
                let sigs = header_text(headers, "webhook-signature")
                    .ok_or_else(|| missing("webhook-signature"))?;
                let t = parse_ts(ts_text).ok_or_else(bad_format)?;
                self.check_ts(t, now)?;
                let expected = hmac(
                    HmacAlgorithm::Sha256,
                    self.key(),
                    &[id.as_bytes(), b".", ts_text.as_bytes(), b".", body],
                );
                let mut ok = false;
                for item in sigs.split(' ').filter(|s| !s.is_empty()) {
                    if let Some(("v1", b64)) = item.split_once(',')
                        && let Ok(presented) = STANDARD.decode(b64)
                    {
                        ok |= ct_eq(&presented, &expected);
                    }
                }
                if ok { Ok(()) } else { Err(bad_signature()) }
            }
        }
    }
}

/// Decodes a Standard Webhooks secret: optional `whsec_` prefix, then base64.
pub(crate) fn decode_standard_webhooks_secret(secret: &str) -> Option<Vec<u8>> {
    let b64 = secret.strip_prefix("whsec_").unwrap_or(secret);
    STANDARD.decode(b64).ok().filter(|k| !k.is_empty())
}
