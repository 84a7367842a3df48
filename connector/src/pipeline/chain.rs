//! Running one webhook entry for one message (`docs/reference/module-contract.md` §5.3): its single module, or its
//! chain items in sequence or in parallel, each with its own retries (§6), the whole run bounded
//! by the chain timeout in both modes, with siblings cancelled when required and succeeded items
//! recorded for partial completion (§5.4).

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::partial::PartialRecord;
use super::{Route, RouteItem};
use crate::lease::Lease;
use crate::output::{Delivery, ErrorCategory, ErrorKind, OutputError};

/// What became of one item (§5.3 "Item results").
#[derive(Debug, Clone, PartialEq)]
pub enum ItemResult {
    /// It succeeded in this run.
    Succeeded,
    /// It succeeded in an earlier delivery of the same message (§5.4); not run again.
    AlreadyDone,
    /// It failed after its retries.
    Failed(OutputError),
    /// Not started: an earlier item failed (with this kind) and `continue_on_error` is false,
    /// or the chain timeout had passed (`None`).
    Skipped(Option<ErrorKind>),
    /// Dropped while running because a sibling failed with this kind (parallel,
    /// `continue_on_error: false`).
    Cancelled(ErrorKind),
    /// Dropped while running because the chain timeout passed (`Transient`).
    TimedOut,
}

/// Shared by every item of one run.
pub(crate) struct RunContext<'a> {
    /// `max_concurrent_requests`: one permit per `process` call, released during retry delays.
    pub permits: &'a Semaphore,
    /// Partial completion record of the channel.
    pub partial: &'a PartialRecord,
    /// The relay's lease on the message: once lost, no item starts another attempt (§6).
    pub lease: &'a Lease,
}

/// Runs `route` for `delivery`; one result per item, in item order.
pub(crate) async fn run(
    route: &Route,
    delivery: &Delivery,
    ctx: &RunContext<'_>,
) -> Vec<ItemResult> {
    let deadline = route.chain.as_ref().map(|c| Instant::now() + c.timeout);
    let parallel = route.chain.as_ref().is_some_and(|c| c.parallel);
    if parallel {
        run_parallel(route, delivery, ctx, deadline).await
    } else {
        run_sequential(route, delivery, ctx, deadline).await
    }
}

fn continue_on_error(route: &Route) -> bool {
    route.chain.as_ref().is_none_or(|c| c.continue_on_error)
}

fn already_done(
    route: &Route,
    item: &RouteItem,
    delivery: &Delivery,
    ctx: &RunContext<'_>,
) -> bool {
    route.chain.is_some()
        && ctx
            .partial
            .succeeded(&delivery.message_id, item.index, item.fingerprint)
}

async fn run_sequential(
    route: &Route,
    delivery: &Delivery,
    ctx: &RunContext<'_>,
    deadline: Option<Instant>,
) -> Vec<ItemResult> {
    let mut results = Vec::with_capacity(route.items.len());
    // Once set, the remaining items are skipped for this cause.
    let mut stopped: Option<Option<ErrorKind>> = None;
    for item in &route.items {
        if already_done(route, item, delivery, ctx) {
            results.push(ItemResult::AlreadyDone);
            continue;
        }
        if let Some(cause) = stopped {
            results.push(ItemResult::Skipped(cause));
            continue;
        }
        let result = match deadline {
            Some(d) if Instant::now() >= d => {
                stopped = Some(None);
                results.push(ItemResult::Skipped(None));
                continue;
            }
            Some(d) => tokio::time::timeout_at(d, run_item(route, item, delivery, ctx))
                .await
                .ok(),
            None => Some(run_item(route, item, delivery, ctx).await),
        };
        results.push(match result {
            Some(Ok(())) => ItemResult::Succeeded,
            Some(Err(e)) => {
                if !continue_on_error(route) {
                    stopped = Some(Some(e.kind));
                }
                ItemResult::Failed(e)
            }
            None => {
                stopped = Some(None);
                ItemResult::TimedOut
            }
        });
    }
    results
}

async fn run_parallel(
    route: &Route,
    delivery: &Delivery,
    ctx: &RunContext<'_>,
    deadline: Option<Instant>,
) -> Vec<ItemResult> {
    let mut results: Vec<Option<ItemResult>> = vec![None; route.items.len()];
    let mut running = FuturesUnordered::new();
    for (pos, item) in route.items.iter().enumerate() {
        if already_done(route, item, delivery, ctx) {
            results[pos] = Some(ItemResult::AlreadyDone);
        } else {
            running.push(async move { (pos, run_item(route, item, delivery, ctx).await) });
        }
    }
    let far = Instant::now() + std::time::Duration::from_secs(86_400 * 365);
    let timeout = tokio::time::sleep_until(deadline.unwrap_or(far));
    tokio::pin!(timeout);
    let mut cancelled_by: Option<ErrorKind> = None;
    let mut timed_out = false;
    loop {
        tokio::select! {
            next = running.next() => {
                let Some((pos, result)) = next else { break };
                match result {
                    Ok(()) => results[pos] = Some(ItemResult::Succeeded),
                    Err(e) => {
                        let kind = e.kind;
                        results[pos] = Some(ItemResult::Failed(e));
                        if !continue_on_error(route) {
                            cancelled_by = Some(kind);
                            break;
                        }
                    }
                }
            }
            () = &mut timeout => {
                timed_out = true;
                break;
            }
        }
    }
    // Dropping the futures cancels the items still running (process is cancellation-safe).
    drop(running);
    results
        .into_iter()
        .map(|r| match (r, cancelled_by) {
            (Some(r), _) => r,
            (None, Some(kind)) => ItemResult::Cancelled(kind),
            (None, None) if timed_out => ItemResult::TimedOut,
            (None, None) => ItemResult::Skipped(None),
        })
        .collect()
}

/// One item with its retry policy: each attempt under one permit, no permit held while a retry
/// delay sleeps, and no new attempt once the lease is lost (§6, the failure at hand is
/// final). Success is recorded for partial completion at once (§5.4).
async fn run_item(
    route: &Route,
    item: &RouteItem,
    delivery: &Delivery,
    ctx: &RunContext<'_>,
) -> Result<(), OutputError> {
    let attempts = item.retry.attempts();
    let mut done = 0u32;
    loop {
        let result = {
            let Ok(_permit) = ctx.permits.acquire().await else {
                return Err(OutputError::transient(
                    ErrorCategory::Other,
                    "connector shutting down",
                ));
            };
            item.instance.process(delivery).await
        };
        done += 1;
        match result {
            Ok(()) => {
                if route.chain.is_some() {
                    ctx.partial
                        .mark(&delivery.message_id, item.index, item.fingerprint);
                }
                return Ok(());
            }
            Err(e) if done >= attempts || !item.retry.should_retry(&e) => return Err(e),
            Err(e) => {
                let delay = item.retry.delay(done, e.retry_after);
                tracing::debug!(
                    message_id = %delivery.message_id,
                    instance = %item.instance.label,
                    attempt = done,
                    delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    error = %e,
                    "Retrying module"
                );
                tokio::select! {
                    biased;
                    () = ctx.lease.cancelled() => return Err(e),
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}
