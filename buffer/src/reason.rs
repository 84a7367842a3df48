//! Nack reasons are client text: they are stored as `last_error`, so they are cut to a bound.

use crate::Settle;

/// Longest `last_error` kept, in bytes.
pub(crate) const MAX_REASON_BYTES: usize = 1024;

/// `text` cut to [`MAX_REASON_BYTES`] at a character boundary.
pub(crate) fn bounded(mut text: String) -> String {
    if text.len() > MAX_REASON_BYTES {
        let mut end = MAX_REASON_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// The same settle action with its reason bounded.
pub(crate) fn bound_action(action: Settle) -> Settle {
    match action {
        Settle::Nack {
            retry,
            delay,
            reason,
        } => Settle::Nack {
            retry,
            delay,
            reason: reason.map(bounded),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_at_a_char_boundary() {
        let long = "é".repeat(MAX_REASON_BYTES);
        let cut = bounded(long.clone());
        assert!(cut.len() <= MAX_REASON_BYTES && long.starts_with(&cut));
        assert_eq!(bounded("short".into()), "short");
    }
}
