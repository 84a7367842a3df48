//! Errors of buffer operations.

/// Why a buffer operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BufferError {
    /// The queue already holds `max_queue_size` live messages (ingest answers 429).
    #[error("queue full")]
    QueueFull,
    /// The message is larger than the channel's `max_message_size` (413).
    #[error("message too large")]
    TooLarge,
    /// The channel (or the queue) does not exist.
    #[error("unknown channel or queue: {0}")]
    UnknownChannel(String),
    /// The backend cannot be reached or refused the operation (ingest answers 503).
    #[error("buffer unavailable: {0}")]
    Unavailable(String),
    /// The operation did not complete within the operation timeout.
    #[error("buffer operation timed out")]
    Timeout,
    /// The store is held by another process (embedded backend, R-70).
    #[error("buffer store is locked by another process: {0}")]
    Locked(String),
    /// Stored data could not be read.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// Invalid argument (e.g. a bad cursor or limit).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The buffer was closed.
    #[error("buffer closed")]
    Closed,
}

impl BufferError {
    /// Whether trying the same operation again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            BufferError::QueueFull | BufferError::Unavailable(_) | BufferError::Timeout
        )
    }
}
