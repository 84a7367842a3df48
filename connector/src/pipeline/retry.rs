//! The module retry policy (`docs/reference/module-contract.md` §6): its lenient parsing (wrong types fall back to the
//! default with a warning, out-of-range values are clamped with a warning), the retry decision
//! by error category and kind, and the delay with backoff, jitter and a capped `retry_after`.

use std::time::Duration;

use serde_json::Value;
use webhook_connect_protocol::backoff::Backoff;

use crate::output::{ErrorCategory, ErrorKind, OutputError};
use crate::settings::Problems;
use crate::settings::Reader;

/// A sanitised `retry` object.
#[derive(Debug, Clone, PartialEq)]
pub struct ModuleRetry {
    /// `enabled` (default false): when false there is exactly one attempt.
    pub enabled: bool,
    /// `max_attempts` (default 3), clamped to 1–20.
    pub max_attempts: u32,
    /// `initial_delay` (default 1 s), clamped to 0–60 s.
    pub initial_delay: Duration,
    /// `max_delay` (default 60 s), clamped to 0–60 s, then raised to at least `initial_delay`.
    pub max_delay: Duration,
    /// `backoff_multiplier` (default 2), clamped to 1–10.
    pub multiplier: f64,
    /// `jitter` (default 0.2), clamped to 0–1: each delay is reduced by up to this fraction.
    pub jitter: f64,
    /// `retryable_errors`: categories always retried (unless also non-retryable).
    pub retryable: Vec<ErrorCategory>,
    /// `non_retryable_errors`: categories never retried.
    pub non_retryable: Vec<ErrorCategory>,
}

impl Default for ModuleRetry {
    fn default() -> Self {
        ModuleRetry {
            enabled: false,
            max_attempts: 3,
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            multiplier: 2.0,
            jitter: 0.2,
            retryable: vec![ErrorCategory::Connection, ErrorCategory::Timeout],
            non_retryable: vec![ErrorCategory::Auth, ErrorCategory::InvalidData],
        }
    }
}

/// The category an error name of the original (or our category name) stands for.
pub fn category_of(name: &str) -> Option<ErrorCategory> {
    Some(match name {
        "ConnectionError"
        | "ConnectionRefusedError"
        | "ConnectionResetError"
        | "OSError"
        | "connection" => ErrorCategory::Connection,
        "TimeoutError" | "timeout" => ErrorCategory::Timeout,
        "AuthenticationError" | "PermissionError" | "auth" => ErrorCategory::Auth,
        "ValueError" | "KeyError" | "TypeError" | "invalid_data" => ErrorCategory::InvalidData,
        "rate_limited" => ErrorCategory::RateLimited,
        "server_error" => ErrorCategory::ServerError,
        "client_error" => ErrorCategory::ClientError,
        "other" => ErrorCategory::Other,
        _ => return None,
    })
}

impl ModuleRetry {
    /// Attempts this policy allows.
    pub fn attempts(&self) -> u32 {
        if self.enabled { self.max_attempts } else { 1 }
    }

    /// Whether a failed attempt may be followed by another (§6 "Retry decision").
    pub fn should_retry(&self, error: &OutputError) -> bool {
        if self.non_retryable.contains(&error.category) {
            return false;
        }
        if self.retryable.contains(&error.category) {
            return true;
        }
        error.kind == ErrorKind::Transient
    }

    /// The delay before attempt `done + 1`: the sink's `retry_after` capped at `max_delay`, or
    /// `min(initial × multiplier^(done−1), max_delay) × (1 − jitter × u)` with `u` in [0, 1).
    pub fn delay_with(&self, done: u32, retry_after: Option<Duration>, u: f64) -> Duration {
        if let Some(hint) = retry_after {
            return hint.min(self.max_delay);
        }
        self.backoff().delay_for_from(done, u)
    }

    /// The backoff of this policy (`initial_delay`, `max_delay`, `backoff_multiplier`,
    /// `jitter`).
    fn backoff(&self) -> Backoff {
        Backoff::new(self.initial_delay, self.max_delay, self.multiplier).with_jitter(self.jitter)
    }

    /// [`Self::delay_with`] with a random `u`.
    pub fn delay(&self, done: u32, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            Some(hint) => hint.min(self.max_delay),
            None => self.backoff().delay_for(done),
        }
    }

    /// Reads a `retry` value found at `path` (for example `webhooks.json: orders.retry`).
    /// Lenient as the original: problems are warnings and fall back to the defaults.
    pub(crate) fn parse(value: &Value, path: &str, problems: &mut Problems) -> Self {
        let mut policy = ModuleRetry::default();
        let Value::Object(map) = value else {
            if !value.is_null() {
                problems.warn(format!(
                    "{path}: expected an object, got {value}; retries disabled"
                ));
            }
            return policy;
        };
        // Type errors are warnings here, so read into a scratch list and demote them.
        let mut scratch = Problems::default();
        let mut r = Reader::detached(map, path.to_owned());
        policy.enabled = r.boolean(&mut scratch, "enabled", false);
        if let Some(n) = r.integer(&mut scratch, "max_attempts") {
            let c = n.clamp(1, 20);
            if c != n {
                r.warn(
                    &mut scratch,
                    "max_attempts",
                    format!("{n} is outside 1–20; using {c}"),
                );
            }
            policy.max_attempts = u32::try_from(c).unwrap_or(3);
        }
        let initial = r.number_clamped(&mut scratch, "initial_delay", 1.0, 0.0, 60.0);
        let mut max = r.number_clamped(&mut scratch, "max_delay", 60.0, 0.0, 60.0);
        if max < initial {
            r.warn(
                &mut scratch,
                "max_delay",
                format!("{max} is below initial_delay; using {initial}"),
            );
            max = initial;
        }
        policy.initial_delay = Duration::from_secs_f64(initial);
        policy.max_delay = Duration::from_secs_f64(max);
        policy.multiplier = r.number_clamped(&mut scratch, "backoff_multiplier", 2.0, 1.0, 10.0);
        policy.jitter = r.number_clamped(&mut scratch, "jitter", 0.2, 0.0, 1.0);
        for (key, target) in [
            ("retryable_errors", &mut policy.retryable),
            ("non_retryable_errors", &mut policy.non_retryable),
        ] {
            let Some(names) = r.string_list(&mut scratch, key) else {
                continue;
            };
            target.clear();
            for name in names {
                match category_of(&name) {
                    Some(c) if !target.contains(&c) => target.push(c),
                    Some(_) => {}
                    None => r.warn(
                        &mut scratch,
                        key,
                        format!("unknown error name {name:?} (ignored)"),
                    ),
                }
            }
        }
        r.finish(&mut scratch, false);
        problems.warnings.extend(scratch.warnings);
        problems.warnings.extend(
            scratch
                .errors
                .into_iter()
                .map(|e| format!("{e}; using the default")),
        );
        policy
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> (ModuleRetry, Problems) {
        let mut p = Problems::default();
        (ModuleRetry::parse(&v, "webhooks.json: a.retry", &mut p), p)
    }

    #[test]
    fn values_are_clamped_with_warnings_and_wrong_types_fall_back() {
        let (r, p) = parse(json!({
            "enabled": "yes", "max_attempts": 50, "initial_delay": 5, "max_delay": 2,
            "backoff_multiplier": 0.5, "jitter": "x"
        }));
        assert!(r.enabled);
        assert_eq!(r.max_attempts, 20);
        assert_eq!(r.initial_delay, Duration::from_secs(5));
        assert_eq!(
            r.max_delay,
            Duration::from_secs(5),
            "raised to initial_delay"
        );
        assert!(
            (r.multiplier - 1.0).abs() < f64::EPSILON,
            "below 1 is clamped"
        );
        assert!(
            (r.jitter - 0.2).abs() < f64::EPSILON,
            "wrong type → default"
        );
        assert!(p.errors.is_empty());
        assert!(
            p.warnings.iter().any(|w| w.contains("retry.jitter")),
            "{p:?}"
        );
        assert!(p.warnings.iter().any(|w| w.contains("retry.max_attempts")));
    }

    #[test]
    fn disabled_or_missing_means_one_attempt() {
        assert_eq!(parse(Value::Null).0.attempts(), 1);
        assert_eq!(parse(json!({"max_attempts": 5})).0.attempts(), 1);
        assert_eq!(
            parse(json!({"enabled": true, "max_attempts": 0}))
                .0
                .attempts(),
            1
        );
    }

    #[test]
    fn decision_follows_the_lists_then_the_kind() {
        let (r, p) = parse(json!({
            "enabled": true,
            "retryable_errors": ["PermissionError", "nonsense"],
            "non_retryable_errors": ["ValueError"]
        }));
        assert!(p.warnings.iter().any(|w| w.contains("nonsense")));
        let unavailable_auth = OutputError::unavailable(ErrorCategory::Auth, "denied");
        assert!(
            r.should_retry(&unavailable_auth),
            "auth listed as retryable"
        );
        let transient_invalid = OutputError::transient(ErrorCategory::InvalidData, "x");
        assert!(!r.should_retry(&transient_invalid), "non-retryable wins");
        let transient_other = OutputError::transient(ErrorCategory::ServerError, "503");
        assert!(r.should_retry(&transient_other));
        let permanent = OutputError::permanent(ErrorCategory::ClientError, "400");
        assert!(!r.should_retry(&permanent));
    }

    #[test]
    fn delay_backs_off_applies_jitter_and_caps_retry_after() {
        let (r, _) =
            parse(json!({"enabled": true, "initial_delay": 1, "max_delay": 5, "jitter": 0.5}));
        assert_eq!(r.delay_with(1, None, 0.0), Duration::from_secs(1));
        assert_eq!(r.delay_with(3, None, 0.0), Duration::from_secs(4));
        assert_eq!(r.delay_with(4, None, 0.0), Duration::from_secs(5));
        assert_eq!(r.delay_with(4, None, 1.0), Duration::from_secs_f64(2.5));
        assert_eq!(
            r.delay_with(1, Some(Duration::from_secs(120)), 0.0),
            Duration::from_secs(5)
        );
    }
}
