//! The key file of `state.encryption_key_file`: 32 bytes written as 64 hex digits or as base64,
//! one trailing newline allowed. Read here so `check-config` reports a bad key file the way
//! start-up does; the state store ([`crate::state_store::seal`]) uses the key.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Length of the key in bytes.
pub const KEY_LEN: usize = 32;

/// Parses key file text.
pub fn parse_key(text: &str) -> Result<[u8; KEY_LEN], String> {
    let text = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(text);
    let bytes = if text.len() == 2 * KEY_LEN && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(text).map_err(|e| e.to_string())?
    } else {
        STANDARD
            .decode(text)
            .map_err(|_| "must hold 32 bytes as 64 hex digits or as base64".to_owned())?
    };
    <[u8; KEY_LEN]>::try_from(bytes.as_slice())
        .map_err(|_| format!("must hold 32 bytes, got {}", bytes.len()))
}

/// Reads and parses the key file at `path`; errors name the key and the path.
pub fn read_key(path: &str) -> Result<[u8; KEY_LEN], String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("state.encryption_key_file: cannot read {path}: {e}"))?;
    parse_key(&text).map_err(|e| format!("state.encryption_key_file: {path}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_as_hex_or_base64() {
        let hex = format!("{}\n", "0f".repeat(32));
        assert_eq!(parse_key(&hex).ok(), Some([15; 32]));
        assert_eq!(parse_key(&STANDARD.encode([3u8; 32])).ok(), Some([3; 32]));
        assert!(parse_key("short").is_err());
        assert!(parse_key(&STANDARD.encode([3u8; 16])).is_err());
        assert!(read_key("/nonexistent/wc-key").is_err());
    }
}
