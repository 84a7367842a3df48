//! `save_to_disk` (`docs/reference/module-contract.md` §3.2): one JSON (or raw) file per message, written to a
//! temporary file, fsynced and renamed, so a redelivery with the default pattern rewrites the
//! same file; or one JSON line per message appended to a file. Every written path must stay
//! inside `base_dir` (symlinks followed); `..`, NUL and system directories are refused at load.

use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Value};
use webhook_connect_protocol::Timestamp;

use super::{Delivery, ErrorCategory, ModuleSettings, Output, OutputError};
use crate::percent::percent_decode;
use crate::settings::Problems;

/// Directories `base_dir` must not be, or be under.
const SYSTEM_DIRS: &[&str] = &[
    "/etc",
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib64",
    "/sys",
    "/proc",
    "/dev",
    "/root",
    "/boot",
    "/var/log",
    "/var/db",
    "/var/run",
    "/var/lib",
    "/var/cache",
    "/var/spool",
    "/var/mail",
    "/var/backups",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Jsonl,
    Raw,
}

/// The `save_to_disk` module.
#[derive(Debug)]
pub struct SaveToDisk {
    /// Directory (per-file formats) or file (append mode), inside `base_dir`.
    target: PathBuf,
    base_dir: PathBuf,
    format: Format,
    include_headers: bool,
    pattern: String,
    append: bool,
    fsync: bool,
    /// Serialises appends to the one file; held by the blocking write itself, so a dropped
    /// `process` future cannot release it early.
    append_lock: Arc<std::sync::Mutex<()>>,
}

/// Why a configured path is refused: `..` or NUL, also after decoding percent-escapes twice.
fn path_problem(raw: &str) -> Option<&'static str> {
    let once = percent_decode(raw);
    let twice = percent_decode(&once);
    for text in [raw, &*once, &*twice] {
        if text.contains('\0') {
            return Some("must not contain NUL");
        }
        if Path::new(text)
            .components()
            .any(|c| c == Component::ParentDir)
            || text.split(['/', '\\']).any(|part| part == "..")
        {
            return Some("must not contain '..'");
        }
    }
    None
}

fn is_system_dir(dir: &Path) -> bool {
    SYSTEM_DIRS
        .iter()
        .any(|s| dir == Path::new(s) || dir.starts_with(s))
}

/// Builds `save_to_disk`.
pub fn build(settings: &ModuleSettings<'_>, problems: &mut Problems) -> Option<Box<dyn Output>> {
    let mut r = settings.config_reader();
    let errors_before = problems.errors.len();
    let path = r.string(problems, "path").unwrap_or_else(|| ".".into());
    let base_dir = r.string(problems, "base_dir");
    let format = match r.choice(problems, "format", "json", &["json", "jsonl", "raw"]) {
        "jsonl" => Format::Jsonl,
        "raw" => Format::Raw,
        _ => Format::Json,
    };
    let include_headers = r.boolean(problems, "include_headers", false);
    let pattern = r.string(problems, "filename_pattern");
    let extension = r.string(problems, "file_extension");
    let append = r.boolean(problems, "append", false);
    let fsync = r.boolean(problems, "fsync", true);
    r.finish(problems, false);

    if let Some(why) = path_problem(&path) {
        r.error(problems, "path", why);
    }
    let base_dir = match base_dir {
        Some(b) => {
            if let Some(why) = path_problem(&b) {
                r.error(problems, "base_dir", why);
            }
            PathBuf::from(b)
        }
        None => match std::env::current_dir() {
            Ok(d) => d,
            Err(e) => {
                r.error(problems, "base_dir", format!("no working directory: {e}"));
                PathBuf::new()
            }
        },
    };
    let absolute_base = if base_dir.is_absolute() {
        base_dir.clone()
    } else {
        std::env::current_dir().unwrap_or_default().join(&base_dir)
    };
    if is_system_dir(&absolute_base) {
        r.error(
            problems,
            "base_dir",
            format!("{} is a system directory", absolute_base.display()),
        );
    }
    let target = if Path::new(&path).is_absolute() {
        PathBuf::from(&path)
    } else {
        absolute_base.join(&path)
    };
    if !target.starts_with(&absolute_base) {
        r.error(problems, "path", "must be inside base_dir");
    }
    if append && format != Format::Jsonl {
        r.error(problems, "append", "requires format \"jsonl\"");
    }
    let pattern = match (pattern, extension) {
        (Some(p), _) => p,
        (None, Some(ext)) => format!("{{message_id}}.{}", ext.trim_start_matches('.')),
        (None, None) => "{message_id}.json".to_owned(),
    };
    if pattern.is_empty()
        || pattern.contains(['/', '\\', '\0'])
        || pattern == "."
        || pattern == ".."
    {
        r.error(
            problems,
            "filename_pattern",
            "must give a single path component",
        );
    }
    if problems.errors.len() > errors_before {
        return None;
    }
    Some(Box::new(SaveToDisk {
        target,
        base_dir: absolute_base,
        format,
        include_headers,
        pattern,
        append,
        fsync,
        append_lock: Arc::new(std::sync::Mutex::new(())),
    }))
}

fn io_error(what: &str, e: &std::io::Error) -> OutputError {
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => {
            OutputError::unavailable(ErrorCategory::Auth, format!("{what}: permission denied"))
        }
        _ => OutputError::transient(ErrorCategory::Other, format!("{what}: {e}")),
    }
}

/// `YYYYMMDDTHHMMSS.ffffffZ` in UTC.
fn compact_timestamp() -> String {
    let text = Timestamp::now().to_string();
    let main: String = text
        .chars()
        .take(26)
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    format!("{main}Z")
}

fn with_dir_mode(b: &mut std::fs::DirBuilder) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
}

fn with_file_mode(o: &mut std::fs::OpenOptions) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
}

impl SaveToDisk {
    fn record(&self, d: &Delivery, always_headers: bool) -> Value {
        let mut m = Map::new();
        m.insert("message_id".into(), Value::String(d.message_id.clone()));
        m.insert("webhook_id".into(), Value::String(d.webhook_id.clone()));
        m.insert(
            "received_at".into(),
            d.received_at.clone().map_or(Value::Null, Value::String),
        );
        if always_headers || self.include_headers {
            m.insert(
                "headers".into(),
                Value::Object(
                    d.headers
                        .iter()
                        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                        .collect(),
                ),
            );
        }
        m.insert("payload".into(), d.payload.clone());
        Value::Object(m)
    }

    fn content(&self, d: &Delivery) -> Result<Vec<u8>, OutputError> {
        match self.format {
            Format::Raw if d.body.is_empty() => Err(OutputError::permanent(
                ErrorCategory::InvalidData,
                "format raw: the message has no body",
            )),
            Format::Raw => Ok(d.body.to_vec()),
            _ if self.append => {
                let mut line = self.record(d, false).to_string().into_bytes();
                line.push(b'\n');
                Ok(line)
            }
            _ => {
                let value = if self.include_headers {
                    self.record(d, true)
                } else {
                    d.payload.clone()
                };
                let mut text = value.to_string().into_bytes();
                text.push(b'\n');
                Ok(text)
            }
        }
    }

    fn file_name(&self, d: &Delivery) -> Result<String, OutputError> {
        let name = self
            .pattern
            .replace("{message_id}", &d.message_id)
            .replace("{webhook_id}", &d.webhook_id)
            .replace("{sequence}", &d.sequence.to_string())
            .replace("{timestamp}", &compact_timestamp())
            .replace("{uuid}", &uuid::Uuid::new_v4().to_string());
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\', '\0']) {
            return Err(OutputError::permanent(
                ErrorCategory::InvalidData,
                "the file name would not be a single path component",
            ));
        }
        Ok(name)
    }

    /// What to write for `d`, computed before any blocking I/O.
    fn job(&self, d: &Delivery) -> Result<WriteJob, OutputError> {
        let content = self.content(d)?;
        let (dir, name) = if self.append {
            let name = self.target.file_name().ok_or_else(|| {
                OutputError::permanent(ErrorCategory::Other, "append: path names no file")
            })?;
            (
                self.target.parent().unwrap_or(&self.base_dir).to_path_buf(),
                name.to_string_lossy().into_owned(),
            )
        } else {
            (self.target.clone(), self.file_name(d)?)
        };
        Ok(WriteJob {
            dir,
            base_dir: self.base_dir.clone(),
            name,
            content,
            append: self.append.then(|| self.append_lock.clone()),
            fsync: self.fsync,
        })
    }
}

/// One write, run on the blocking pool.
struct WriteJob {
    dir: PathBuf,
    base_dir: PathBuf,
    name: String,
    content: Vec<u8>,
    /// Append mode, with the lock of the file.
    append: Option<Arc<std::sync::Mutex<()>>>,
    fsync: bool,
}

/// Creates `dir` (0700) and checks that it resolves inside `base_dir` (symlinks followed).
fn prepare_dir(dir: &Path, base_dir: &Path) -> Result<PathBuf, OutputError> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    with_dir_mode(&mut b);
    b.create(dir)
        .map_err(|e| io_error("cannot create the directory", &e))?;
    let real = dir
        .canonicalize()
        .map_err(|e| io_error("cannot resolve the directory", &e))?;
    let base = base_dir
        .canonicalize()
        .map_err(|e| io_error("cannot resolve base_dir", &e))?;
    if !real.starts_with(&base) {
        return Err(OutputError::unavailable(
            ErrorCategory::Other,
            "the target directory resolves outside base_dir",
        ));
    }
    Ok(real)
}

impl WriteJob {
    fn run(self) -> Result<(), OutputError> {
        let dir = prepare_dir(&self.dir, &self.base_dir)?;
        if let Some(lock) = &self.append {
            let _guard = lock.lock().unwrap_or_else(|e| e.into_inner());
            return self.append_to(&dir);
        }
        let tmp = dir.join(format!(
            ".{}.{}.tmp",
            self.name,
            uuid::Uuid::new_v4().simple()
        ));
        let result = (|| {
            let mut o = std::fs::OpenOptions::new();
            o.write(true).create_new(true);
            with_file_mode(&mut o);
            let mut f = o.open(&tmp)?;
            f.write_all(&self.content)?;
            if self.fsync {
                f.sync_all()?;
            }
            std::fs::rename(&tmp, dir.join(&self.name))?;
            if self.fsync {
                std::fs::File::open(&dir)?.sync_all()?;
            }
            Ok(())
        })();
        result.map_err(|e: std::io::Error| {
            let _ = std::fs::remove_file(&tmp);
            io_error("cannot write the file", &e)
        })
    }

    fn append_to(&self, dir: &Path) -> Result<(), OutputError> {
        let file = dir.join(&self.name);
        let existed = file.exists();
        let mut o = std::fs::OpenOptions::new();
        o.append(true).create(true);
        with_file_mode(&mut o);
        let mut f = o
            .open(&file)
            .map_err(|e| io_error("cannot open the file", &e))?;
        f.write_all(&self.content)
            .map_err(|e| io_error("cannot append to the file", &e))?;
        if self.fsync {
            f.sync_all()
                .map_err(|e| io_error("cannot sync the file", &e))?;
            if !existed {
                std::fs::File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(|e| io_error("cannot sync the directory", &e))?;
            }
        }
        Ok(())
    }
}

async fn run_blocking(job: WriteJob) -> Result<(), OutputError> {
    tokio::task::spawn_blocking(move || job.run())
        .await
        .unwrap_or_else(|e| {
            Err(OutputError::transient(
                ErrorCategory::Other,
                format!("file write task failed: {e}"),
            ))
        })
}

#[async_trait::async_trait]
impl Output for SaveToDisk {
    async fn setup(&self) -> Result<(), OutputError> {
        let dir = if self.append {
            self.target.parent().unwrap_or(&self.base_dir).to_path_buf()
        } else {
            self.target.clone()
        };
        let base = self.base_dir.clone();
        tokio::task::spawn_blocking(move || prepare_dir(&dir, &base).map(|_| ()))
            .await
            .unwrap_or_else(|e| {
                Err(OutputError::transient(
                    ErrorCategory::Other,
                    format!("setup task failed: {e}"),
                ))
            })
    }

    async fn process(&self, delivery: &Delivery) -> Result<(), OutputError> {
        run_blocking(self.job(delivery)?).await
    }

    async fn teardown(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_is_refused_even_when_percent_encoded() {
        assert!(path_problem("a/../b").is_some());
        assert!(path_problem("%2e%2e/x").is_some());
        assert!(path_problem("%252e%252e/x").is_some());
        assert!(path_problem("a\0b").is_some());
        assert!(path_problem("out/webhooks").is_none());
    }

    #[test]
    fn system_directories_are_refused_but_tmp_is_allowed() {
        assert!(is_system_dir(Path::new("/etc")));
        assert!(is_system_dir(Path::new("/var/lib/x")));
        assert!(!is_system_dir(Path::new("/tmp/x")));
        assert!(!is_system_dir(Path::new("/var/tmp")));
        assert!(!is_system_dir(Path::new("/etcetera")));
    }

    #[test]
    fn the_timestamp_is_compact_utc() {
        let t = compact_timestamp();
        assert_eq!(t.len(), "20240101T000000.000000Z".len(), "{t}");
        assert!(t.ends_with('Z') && t.as_bytes()[8] == b'T');
    }
}
