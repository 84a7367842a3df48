//! The relay's persisted state (`config-formats.md` §2.3 `[state]`, `http-api.md` §4.2): token
//! hashes (and the hash of the configured token, to notice a changed configuration), rotations
//! with their grace expiry, and pause state. Admin changes survive restarts and are never
//! reverted by the configuration.
//!
//! The embedded store is one JSON document written atomically (temporary file, fsync, rename),
//! so a crash leaves either the old or the new state. Tokens appear only as SHA-256 hex.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use webhook_connect_protocol::Timestamp;

use crate::channels::TokenHash;

/// What is remembered per channel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelRecord {
    /// SHA-256 hex of the token that was configured when this record was written.
    pub configured_token: Option<String>,
    /// SHA-256 hex of the current token.
    pub current_token: String,
    /// SHA-256 hex of the previous token and when it stops being valid.
    pub previous_token: Option<(String, Timestamp)>,
    /// Last rotation.
    pub rotated_at: Option<Timestamp>,
    /// Paused by an administrator.
    pub paused: bool,
    /// First seen.
    pub created_at: Option<Timestamp>,
    /// For channels created through the admin API: their definition (without the token), so
    /// they are rebuilt at start-up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub definition: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Document {
    #[serde(default)]
    channels: BTreeMap<String, ChannelRecord>,
}

/// Why the state store failed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading or writing the file failed.
    #[error("state store I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The file is not a state document.
    #[error("state store is unreadable: {0}")]
    Corrupt(String),
}

/// The embedded state store.
#[derive(Debug)]
pub struct StateStore {
    path: PathBuf,
    doc: Mutex<Document>,
}

/// Hex of a token hash.
pub fn hex(hash: &TokenHash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// A token hash from hex (`None` when malformed).
pub fn from_hex(text: &str) -> Option<TokenHash> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in text.as_bytes().chunks(2).enumerate() {
        let s = std::str::from_utf8(chunk).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

impl StateStore {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<StateStore, StateError> {
        let doc = match std::fs::read(path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| StateError::Corrupt(e.to_string()))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Document::default(),
            Err(e) => return Err(e.into()),
        };
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)?;
        }
        Ok(StateStore {
            path: path.to_path_buf(),
            doc: Mutex::new(doc),
        })
    }

    /// The record of `channel`.
    pub fn get(&self, channel: &str) -> Option<ChannelRecord> {
        self.doc
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .channels
            .get(channel)
            .cloned()
    }

    /// Changes the record of `channel` and writes the store durably; on failure nothing changes.
    pub fn update(
        &self,
        channel: &str,
        change: impl FnOnce(&mut ChannelRecord),
    ) -> Result<ChannelRecord, StateError> {
        let mut doc = self.doc.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = doc.clone();
        let record = next.channels.entry(channel.to_owned()).or_default();
        change(record);
        let record = record.clone();
        self.write(&next)?;
        *doc = next;
        Ok(record)
    }

    /// Every record, by channel name.
    pub fn all(&self) -> BTreeMap<String, ChannelRecord> {
        self.doc
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .channels
            .clone()
    }

    /// Forgets `channel`.
    pub fn remove(&self, channel: &str) -> Result<(), StateError> {
        let mut doc = self.doc.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = doc.clone();
        if next.channels.remove(channel).is_none() {
            return Ok(());
        }
        self.write(&next)?;
        *doc = next;
        Ok(())
    }

    fn write(&self, doc: &Document) -> Result<(), StateError> {
        use std::io::Write;
        let bytes =
            serde_json::to_vec_pretty(doc).map_err(|e| StateError::Corrupt(e.to_string()))?;
        let tmp = self.path.with_extension("tmp");
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent()
            && let Ok(d) = std::fs::File::open(if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            })
        {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Probe for readiness: the directory is writable.
    pub fn health_check(&self) -> bool {
        let dir = self
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::metadata(dir)
            .map(|m| m.is_dir() && !m.permissions().readonly())
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_reopen_and_hold_no_plaintext_r132() {
        let dir = std::env::temp_dir().join(format!(
            "wc-state-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let path = dir.join("state.json");
        let store = StateStore::open(&path).unwrap();
        let token = crate::channels::hash_token(b"plain-secret-token");
        store
            .update("orders", |r| {
                r.current_token = hex(&token);
                r.paused = true;
            })
            .unwrap();
        let reopened = StateStore::open(&path).unwrap();
        let record = reopened.get("orders").unwrap();
        assert!(record.paused);
        assert_eq!(from_hex(&record.current_token), Some(token));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("plain-secret-token"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn hex_round_trips_and_rejects_garbage() {
        let h = crate::channels::hash_token(b"x");
        assert_eq!(from_hex(&hex(&h)), Some(h));
        assert_eq!(from_hex("zz"), None);
        assert_eq!(from_hex(&"g".repeat(64)), None);
    }
}
