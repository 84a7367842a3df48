//! The embedded state store: one JSON document written atomically (temporary file, fsync,
//! rename), so a crash leaves either the old or the new state. One relay instance only. The
//! file is readable by its owner only (0600).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::{ChannelRecord, StateError};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Document {
    #[serde(default)]
    channels: BTreeMap<String, ChannelRecord>,
}

/// The embedded state store.
#[derive(Debug)]
pub struct FileStore {
    path: PathBuf,
    /// The last document written. Writers hold `writer` for the whole write, so changes are
    /// serialised; readers take only this lock, briefly.
    doc: Mutex<Document>,
    writer: tokio::sync::Mutex<()>,
}

impl FileStore {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<FileStore, StateError> {
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
        Ok(FileStore {
            path: path.to_path_buf(),
            doc: Mutex::new(doc),
            writer: tokio::sync::Mutex::new(()),
        })
    }

    fn snapshot(&self) -> Document {
        self.doc.lock().unwrap_or_else(|p| p.into_inner()).clone()
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

    /// Every record, by channel name.
    pub fn all(&self) -> BTreeMap<String, ChannelRecord> {
        self.snapshot().channels
    }

    /// Changes the record of `channel` and writes the store durably; on failure nothing changes.
    pub async fn update(
        &self,
        channel: &str,
        change: impl Fn(&mut ChannelRecord),
    ) -> Result<ChannelRecord, StateError> {
        let _writer = self.writer.lock().await;
        let mut next = self.snapshot();
        let record = next.channels.entry(channel.to_owned()).or_default();
        change(record);
        let record = record.clone();
        self.commit(next).await?;
        Ok(record)
    }

    /// Forgets `channel`.
    pub async fn remove(&self, channel: &str) -> Result<(), StateError> {
        let _writer = self.writer.lock().await;
        let mut next = self.snapshot();
        if next.channels.remove(channel).is_none() {
            return Ok(());
        }
        self.commit(next).await
    }

    /// Writes `next` (on the blocking pool: it fsyncs) and then makes it the current document.
    async fn commit(&self, next: Document) -> Result<(), StateError> {
        let bytes =
            serde_json::to_vec_pretty(&next).map_err(|e| StateError::Corrupt(e.to_string()))?;
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || write_atomically(&path, &bytes))
            .await
            .map_err(|e| StateError::Io(std::io::Error::other(e)))??;
        *self.doc.lock().unwrap_or_else(|p| p.into_inner()) = next;
        Ok(())
    }

    /// Probe for readiness: the directory is writable.
    pub fn health_check(&self) -> bool {
        std::fs::metadata(parent_dir(&self.path))
            .map(|m| m.is_dir() && !m.permissions().readonly())
            .unwrap_or(false)
    }
}

fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    {
        // Owner only (0600): the temporary file becomes the state file.
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut f = options.open(&tmp)?;
        // A temporary file left by an older version may be wider; tighten it before writing.
        #[cfg(unix)]
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Ok(d) = std::fs::File::open(parent_dir(path)) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{from_hex, hex};
    use super::*;

    #[tokio::test]
    async fn records_survive_reopen_and_hold_no_plaintext_r132() {
        let dir = std::env::temp_dir().join(format!(
            "wc-state-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let path = dir.join("state.json");
        let store = FileStore::open(&path).unwrap();
        let token = crate::channels::hash_token(b"plain-secret-token");
        store
            .update("orders", |r| {
                r.current_token = hex(&token);
                r.paused = true;
            })
            .await
            .unwrap();
        let reopened = FileStore::open(&path).unwrap();
        let record = reopened.get("orders").unwrap();
        assert!(record.paused);
        assert_eq!(from_hex(&record.current_token), Some(token));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("plain-secret-token"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "state file mode {mode:o}");
        }
        reopened.remove("orders").await.unwrap();
        assert!(FileStore::open(&path).unwrap().get("orders").is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
