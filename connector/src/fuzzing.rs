//! Entry points of the fuzz targets (`fuzz/`, `docs/fuzzing.md`) and of the corpus replay test
//! (`tests/it/fuzz_corpus.rs`). Not part of the API.

use std::path::PathBuf;
use std::sync::OnceLock;

use crate::config::{Flags, load::load_with_env};

/// Names of the targets this module serves, as `fuzz/fuzz_targets/<name>.rs`.
pub const TARGETS: &[&str] = &["connector_config"];

/// Runs target `name` on `data`; `false` if this module has no such target.
pub fn run(name: &str, data: &[u8]) -> bool {
    match name {
        "connector_config" => connector_config(data),
        _ => return false,
    }
    true
}

fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("wc-fuzz-connector-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        dir
    })
}

/// The connector configuration loader on file text, with `{$VAR}` substitution against a
/// fixed environment. The first byte picks `connector.toml`, `.json` or `.yaml`; the rest is
/// the file. A refused file names at least one problem; an accepted one loads again to the
/// same relay URL and channels.
pub fn connector_config(data: &[u8]) {
    let Some((&pick, text)) = data.split_first() else {
        return;
    };
    let name = match pick % 3 {
        0 => "connector.toml",
        1 => "connector.json",
        _ => "connector.yaml",
    };
    let path = scratch().join(name);
    if std::fs::write(&path, text).is_err() {
        return;
    }
    let env = |name: &str| match name {
        "RELAY" => Some("https://relay.example.com".to_owned()),
        "TOKEN" => Some("fuzz-token-0123456789".to_owned()),
        "PORT" => Some("8080".to_owned()),
        _ => None,
    };
    let flags = Flags {
        config: Some(path),
        ..Flags::default()
    };
    let first = load_with_env(&flags, &env);
    let second = load_with_env(&flags, &env);
    match (first, second) {
        (Ok((a, _)), Ok((b, _))) => {
            assert_eq!(a.cloud_url, b.cloud_url, "a second load differs");
            assert_eq!(a.channels.len(), b.channels.len(), "a second load differs");
            assert!(!a.channels.is_empty(), "accepted without a channel");
        }
        (Err(a), Err(b)) => {
            assert!(!a.0.errors.is_empty(), "refused without an error");
            assert_eq!(a.0.errors, b.0.errors, "a second load differs");
        }
        _ => panic!("a second load of the same file changed the verdict"),
    }
}
