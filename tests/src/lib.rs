//! Support for end-to-end runs: a real local HTTP target ([`sink`]) and starters for a relay and
//! a connector in one process ([`stack`]).

pub mod sink;
pub mod stack;

/// `X-Hub-Signature-256` of `body` under `secret`: `sha256=` + hex HMAC-SHA256, as GitHub sends.
pub fn github_signature(secret: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}
