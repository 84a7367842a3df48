//! From item results to the ack or nack (`docs/reference/module-contract.md` §5.3 "Outcome", §7.2, §7.3).

use super::Route;
use super::chain::ItemResult;
use crate::ack::Decision;
use crate::output::ErrorKind;

/// The requeue delay asked for when the sink is `Unavailable` (v2 `delay_ms`). The relay clamps
/// it to its `requeue_delay_max_ms`, which is what §7.2 asks for: the connector does not know
/// the relay's value, so it asks for more and lets the relay cap it.
pub const UNAVAILABLE_DELAY_MS: u64 = 3_600_000;

/// The outcome of one run of an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every item succeeded (now or in an earlier delivery).
    Success,
    /// Retrying can never help (`Permanent`, §5.3).
    Permanent(String),
    /// A later delivery may succeed; `unavailable` when every failure was `Unavailable`.
    Retryable {
        /// Reason for the nack.
        reason: String,
        /// Ask for the long requeue delay.
        unavailable: bool,
    },
}

fn describe(route: &Route, pos: usize, text: &str) -> String {
    match (&route.chain, route.items.get(pos)) {
        (Some(_), Some(item)) => format!(
            "chain item {} ({}): {text}",
            item.index, item.instance.module
        ),
        _ => text.to_owned(),
    }
}

/// Classifies the results of a run (§5.3).
pub fn outcome(route: &Route, results: &[ItemResult]) -> Outcome {
    let mut first_reason: Option<String> = None;
    let mut permanent = true;
    let mut unavailable = true;
    let mut any_failure = false;
    for (pos, r) in results.iter().enumerate() {
        let (reason, is_permanent, is_unavailable) = match r {
            ItemResult::Succeeded | ItemResult::AlreadyDone => continue,
            ItemResult::Failed(e) => (
                Some(describe(route, pos, &e.message)),
                e.kind == ErrorKind::Permanent,
                e.kind == ErrorKind::Unavailable,
            ),
            ItemResult::Skipped(Some(kind)) | ItemResult::Cancelled(kind) => {
                (None, *kind == ErrorKind::Permanent, true)
            }
            ItemResult::Skipped(None) => (None, false, false),
            ItemResult::TimedOut => {
                let secs = route
                    .chain
                    .as_ref()
                    .map_or(0.0, |c| c.timeout.as_secs_f64());
                (
                    Some(describe(
                        route,
                        pos,
                        &format!("chain timed out after {secs} s"),
                    )),
                    false,
                    false,
                )
            }
        };
        any_failure = true;
        permanent &= is_permanent;
        unavailable &= is_unavailable;
        if first_reason.is_none() {
            first_reason = reason;
        }
    }
    if !any_failure {
        return Outcome::Success;
    }
    let reason = first_reason.unwrap_or_else(|| "chain did not complete".into());
    if permanent {
        Outcome::Permanent(reason)
    } else {
        Outcome::Retryable {
            reason,
            unavailable,
        }
    }
}

/// The ack or nack for an outcome (§7.2).
pub fn decide(outcome: Outcome) -> Decision {
    match outcome {
        Outcome::Success => Decision::Ack,
        Outcome::Permanent(reason) => Decision::Nack {
            retry: false,
            reason,
            delay_ms: None,
        },
        Outcome::Retryable {
            reason,
            unavailable,
        } => Decision::Nack {
            retry: true,
            reason,
            delay_ms: unavailable.then_some(UNAVAILABLE_DELAY_MS),
        },
    }
}
