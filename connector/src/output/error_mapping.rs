//! How the network modules map the failures of their clients to an [`OutputError`]
//! (`docs/reference/module-contract.md` §2.4): failed HTTP requests, timeouts and socket errors.

use std::future::Future;
use std::time::Duration;

use super::{ErrorCategory, OutputError};
use crate::outbound;

/// A failed HTTP request of a module: refused by the outbound policy or a TLS failure is
/// `Unavailable`, running out of time `Transient`/`timeout`, anything else
/// `Transient`/`connection`. `what` names the call; the error text never holds credentials
/// (they travel in headers).
pub(crate) fn http_error(what: &str, e: &reqwest::Error) -> OutputError {
    if let Some(refused) = outbound::refusal_in(e) {
        return OutputError::unavailable(ErrorCategory::Other, format!("{what}: {refused}"));
    }
    if crate::failure::is_tls_error(e) {
        return OutputError::unavailable(
            ErrorCategory::Connection,
            format!("{what}: TLS failure: {}", crate::failure::error_chain(e)),
        );
    }
    if e.is_timeout() {
        return OutputError::transient(ErrorCategory::Timeout, format!("{what}: timed out"));
    }
    OutputError::transient(
        ErrorCategory::Connection,
        format!("{what}: {}", crate::failure::error_chain(e)),
    )
}

/// Runs `fut` with a limit; running out is `Transient`/`timeout`.
pub(crate) async fn within<T>(
    limit: Duration,
    what: &str,
    fut: impl Future<Output = Result<T, OutputError>>,
) -> Result<T, OutputError> {
    tokio::time::timeout(limit, fut).await.unwrap_or_else(|_| {
        Err(OutputError::transient(
            ErrorCategory::Timeout,
            format!("{what}: no answer within {} s", limit.as_secs_f64()),
        ))
    })
}

/// A socket error: always `Transient`, `timeout` when it says so, else `connection`.
pub(crate) fn io_error(what: &str, e: &std::io::Error) -> OutputError {
    let category = match e.kind() {
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => ErrorCategory::Timeout,
        _ => ErrorCategory::Connection,
    };
    OutputError::transient(category, format!("{what}: {e}"))
}
