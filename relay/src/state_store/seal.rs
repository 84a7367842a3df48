//! Encryption of the webhook entries of admin-created channels at rest (their HMAC, JWT, OAuth
//! … secrets), so no verification secret is stored in plain text (`docs/configuration.md`,
//! "Secrets in the state store").
//!
//! The `webhooks` map of a stored definition is moved into [`ChannelRecord::sealed_webhooks`]
//! as `v1:` + base64(nonce ‖ ChaCha20-Poly1305 ciphertext ‖ tag), with a random 96-bit nonce per
//! value and the channel name as associated data (a sealed value cannot be moved to another
//! channel). Records written before encryption existed (plain `webhooks`) are still read, and
//! sealed the next time they are written or when the store is opened with a key.
//!
//! The key is 32 bytes, written in its file as 64 hex digits or base64 (one trailing newline
//! allowed): `state.encryption_key_file`. Without it, the embedded state store generates one in
//! `<state.path>.key` (0600) on first use; the shared Redis store has no key then and refuses to
//! persist a definition that holds a secret (the admin API answers `422`).

use crate::config::state_key::{KEY_LEN, parse_key, read_key};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::Value;

use super::{ChannelRecord, StateError};

const PREFIX: &str = "v1:";

/// Where the key came from, for messages.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// `state.encryption_key_file`.
    Configured(String),
    /// Generated beside the embedded state file.
    Generated(String),
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::Configured(p) => write!(f, "state.encryption_key_file ({p})"),
            KeySource::Generated(p) => write!(f, "the generated key file {p}"),
        }
    }
}

/// Seals and opens the webhook entries of stored definitions.
pub struct Sealer {
    key: Option<(LessSafeKey, KeySource)>,
    rng: SystemRandom,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("key", &self.key.as_ref().map(|(_, s)| s.to_string()))
            .finish()
    }
}

fn hex_key(key: &[u8; KEY_LEN]) -> String {
    hex::encode(key)
}

/// Writes `bytes` to a new file readable by its owner only (0600 on Unix).
pub fn create_private_file(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

impl Sealer {
    /// A sealer with `key`.
    pub fn with_key(key: [u8; KEY_LEN], source: KeySource) -> Result<Sealer, StateError> {
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, &key)
            .map_err(|_| StateError::Invalid("state encryption key: unusable".into()))?;
        Ok(Sealer {
            key: Some((LessSafeKey::new(unbound), source)),
            rng: SystemRandom::new(),
        })
    }

    /// A sealer without a key: it reads plain records and refuses sealed ones.
    pub fn without_key() -> Sealer {
        Sealer {
            key: None,
            rng: SystemRandom::new(),
        }
    }

    /// Reads the key of `state.encryption_key_file`.
    pub fn from_key_file(path: &str) -> Result<Sealer, StateError> {
        let key = read_key(path).map_err(StateError::Invalid)?;
        Sealer::with_key(key, KeySource::Configured(path.to_owned()))
    }

    /// The key of the embedded store at `state_path`: read from `<state_path>.key`, or
    /// generated there (0600) when neither the key file nor the state file exists yet, or the
    /// state file holds no sealed value. `has_sealed` says whether it does.
    pub fn generated_beside(
        state_path: &std::path::Path,
        has_sealed: bool,
    ) -> Result<Sealer, StateError> {
        let mut name = state_path.as_os_str().to_owned();
        name.push(".key");
        let key_path = std::path::PathBuf::from(name);
        let shown = key_path.display().to_string();
        match std::fs::read_to_string(&key_path) {
            Ok(text) => {
                let key = parse_key(&text)
                    .map_err(|e| StateError::Invalid(format!("state key file {shown}: {e}")))?;
                Sealer::with_key(key, KeySource::Generated(shown))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if has_sealed {
                    return Err(StateError::Invalid(format!(
                        "the state store holds encrypted channel secrets but its key file {shown} is missing; restore it or set state.encryption_key_file"
                    )));
                }
                let mut key = [0u8; KEY_LEN];
                SystemRandom::new().fill(&mut key).map_err(|_| {
                    StateError::Invalid("state encryption key: no random source".into())
                })?;
                if let Some(dir) = key_path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)?;
                }
                create_private_file(&key_path, format!("{}\n", hex_key(&key)).as_bytes())?;
                Sealer::with_key(key, KeySource::Generated(shown))
            }
            Err(e) => Err(StateError::Invalid(format!(
                "state key file {shown}: cannot read: {e}"
            ))),
        }
    }

    /// True when secrets can be sealed.
    pub fn has_key(&self) -> bool {
        self.key.is_some()
    }

    /// Puts the sealed webhooks of `record` back into its definition. Plain records are left
    /// as they are.
    pub fn open(&self, channel: &str, record: &mut ChannelRecord) -> Result<(), StateError> {
        let Some(sealed) = record.sealed_webhooks.as_deref() else {
            return Ok(());
        };
        let Some((key, source)) = &self.key else {
            return Err(StateError::Invalid(format!(
                "channel \"{channel}\": the state store holds its secrets encrypted, but no key is configured; set state.encryption_key_file (or WEBHOOK_RELAY_STATE__ENCRYPTION_KEY_FILE)"
            )));
        };
        let wrong = || {
            StateError::Invalid(format!(
                "channel \"{channel}\": cannot decrypt its stored secrets with {source}; wrong key?"
            ))
        };
        let bytes = sealed
            .strip_prefix(PREFIX)
            .and_then(|b| STANDARD.decode(b).ok())
            .filter(|b| b.len() > NONCE_LEN)
            .ok_or_else(wrong)?;
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| wrong())?;
        let mut buf = ciphertext.to_vec();
        let plain = key
            .open_in_place(nonce, Aad::from(channel.as_bytes()), &mut buf)
            .map_err(|_| wrong())?;
        let webhooks: Value = serde_json::from_slice(plain).map_err(|_| wrong())?;
        record
            .definition
            .get_or_insert_with(Default::default)
            .insert("webhooks".into(), webhooks);
        record.sealed_webhooks = None;
        Ok(())
    }

    /// Moves the `webhooks` of `record`'s definition into `sealed_webhooks`, encrypted. A
    /// record without a definition keeps no sealed value. Without a key the record is left
    /// plain (the admin API refuses definitions with secrets then: [`Sealer::refusal`]).
    pub fn seal(&self, channel: &str, record: &mut ChannelRecord) -> Result<(), StateError> {
        let Some(definition) = record.definition.as_mut() else {
            record.sealed_webhooks = None;
            return Ok(());
        };
        let Some((key, _)) = &self.key else {
            return Ok(());
        };
        let Some(webhooks) = definition.remove("webhooks") else {
            return Ok(());
        };
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| StateError::Invalid("state encryption: no random source".into()))?;
        let mut buf =
            serde_json::to_vec(&webhooks).map_err(|e| StateError::Corrupt(e.to_string()))?;
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(channel.as_bytes()),
            &mut buf,
        )
        .map_err(|_| StateError::Invalid("state encryption failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        record.sealed_webhooks = Some(format!("{PREFIX}{}", STANDARD.encode(out)));
        Ok(())
    }

    /// Why a definition cannot be persisted: it holds secrets and there is no key. `None` when
    /// it can.
    pub fn refusal(&self, definition: &serde_json::Map<String, Value>) -> Option<String> {
        if self.has_key() {
            return None;
        }
        let ids = definition
            .get("webhooks")
            .map(crate::config::redact::webhooks_with_secrets)
            .unwrap_or_default();
        (!ids.is_empty()).then(|| {
            format!(
                "webhooks.{}: holds a secret, which the shared state store keeps only encrypted; set state.encryption_key_file on every relay instance",
                ids.join(", webhooks.")
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record_with_secret() -> ChannelRecord {
        let definition = serde_json::json!({
            "name": "pay",
            "max_queue_size": 5,
            "webhooks": {"stripe": {"hmac": {"preset": "stripe", "secret": "whsec_topsecret"}}},
        });
        ChannelRecord {
            current_token: "ab".repeat(32),
            definition: definition.as_object().cloned(),
            ..ChannelRecord::default()
        }
    }

    #[test]
    fn sealed_webhooks_round_trip_and_hide_the_secret() {
        let sealer = Sealer::with_key([7; 32], KeySource::Configured("k".into())).unwrap();
        let original = record_with_secret();
        let mut r = original.clone();
        sealer.seal("pay", &mut r).unwrap();
        let stored = serde_json::to_string(&r).unwrap();
        assert!(!stored.contains("whsec_topsecret"), "{stored}");
        assert!(!stored.contains("stripe\""), "{stored}");
        assert!(stored.contains("max_queue_size"));
        sealer.open("pay", &mut r).unwrap();
        assert_eq!(r, original);
    }

    #[test]
    fn each_seal_uses_a_fresh_nonce() {
        let sealer = Sealer::with_key([7; 32], KeySource::Configured("k".into())).unwrap();
        let (mut a, mut b) = (record_with_secret(), record_with_secret());
        sealer.seal("pay", &mut a).unwrap();
        sealer.seal("pay", &mut b).unwrap();
        assert_ne!(a.sealed_webhooks, b.sealed_webhooks);
    }

    #[test]
    fn wrong_key_other_channel_and_missing_key_are_clear_errors() {
        let sealer = Sealer::with_key([7; 32], KeySource::Configured("k".into())).unwrap();
        let mut r = record_with_secret();
        sealer.seal("pay", &mut r).unwrap();
        let other = Sealer::with_key([8; 32], KeySource::Configured("other".into())).unwrap();
        let e = other.open("pay", &mut r.clone()).unwrap_err().to_string();
        assert!(
            e.contains("cannot decrypt") && e.contains("wrong key"),
            "{e}"
        );
        let e = sealer
            .open("moved", &mut r.clone())
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot decrypt"), "{e}");
        let e = Sealer::without_key()
            .open("pay", &mut r.clone())
            .unwrap_err()
            .to_string();
        assert!(e.contains("state.encryption_key_file"), "{e}");
    }

    #[test]
    fn plaintext_records_still_open() {
        let sealer = Sealer::with_key([7; 32], KeySource::Configured("k".into())).unwrap();
        let mut r = record_with_secret();
        sealer.open("pay", &mut r).unwrap();
        assert_eq!(r, record_with_secret());
    }

    #[test]
    fn without_a_key_definitions_with_secrets_are_refused() {
        let r = record_with_secret();
        let def = r.definition.unwrap_or_default();
        let refusal = Sealer::without_key().refusal(&def).unwrap_or_default();
        assert!(refusal.contains("webhooks.stripe"), "{refusal}");
        let plain =
            serde_json::json!({"name": "a", "webhooks": {"x": {"ip_whitelist": ["1.2.3.4"]}}});
        assert!(
            Sealer::without_key()
                .refusal(plain.as_object().unwrap_or(&Default::default()))
                .is_none()
        );
    }
}
