//! Why a relay could not start, and so which exit code `main` gives.

use webhook_connect_buffer::BufferError;

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A configuration problem found at start-up (exit 2).
    #[error("{0}")]
    Config(String),
    /// The buffer could not be opened (exit 1; e.g. the store is locked).
    #[error("buffer: {0}")]
    Buffer(#[from] BufferError),
    /// The listener failed.
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
}
