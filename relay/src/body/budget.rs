//! The global memory budget for ingest bodies (`limits.max_inflight_body_bytes`).
//!
//! Every ingest request holds a [`Reservation`] for the bytes its body occupies, taken chunk by
//! chunk while the body is read ([`read_body`]) and given back when the reservation is dropped:
//! when the request ends, whatever ends it (answer, error, client gone, shutdown). A body that
//! does not fit in what is left is refused with `503` instead of growing the relay's memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http_body_util::BodyExt;

/// The shared budget.
#[derive(Debug)]
pub struct BodyBudget {
    limit: u64,
    used: AtomicU64,
}

impl BodyBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> Arc<Self> {
        Arc::new(BodyBudget {
            limit,
            used: AtomicU64::new(0),
        })
    }

    /// Bytes reserved now.
    pub fn in_use(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    /// The configured limit.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// An empty reservation against this budget.
    pub fn reservation(self: &Arc<Self>) -> Reservation {
        Reservation {
            budget: self.clone(),
            held: 0,
        }
    }

    fn try_take(&self, n: u64) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|total| *total <= self.limit)
            })
            .is_ok()
    }
}

/// Bytes of the budget held by one request; given back on drop.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<BodyBudget>,
    held: u64,
}

impl Reservation {
    /// Takes `n` more bytes; `false` (and nothing taken) when the budget has no room.
    pub fn grow(&mut self, n: u64) -> bool {
        if n == 0 {
            return true;
        }
        let taken = self.budget.try_take(n);
        if taken {
            self.held += n;
        }
        taken
    }

    /// Bytes held.
    pub fn held(&self) -> u64 {
        self.held
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.held > 0 {
            self.budget.used.fetch_sub(self.held, Ordering::AcqRel);
        }
    }
}

/// Why a body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadError {
    /// More than the limit.
    TooLarge,
    /// Not complete within the read timeout.
    Timeout,
    /// The global budget has no room for it.
    OverBudget,
    /// The connection failed while the body was read.
    Broken,
}

/// The smallest allocation step, so tiny chunks do not cause many reallocations.
const MIN_STEP: usize = 8 * 1024;

/// Reads `body` into one buffer, never more than `limit` bytes and within `timeout`, taking
/// from `reservation` every byte of capacity before it is allocated. `declared` (the
/// `Content-Length`, already checked against `limit`) caps the growth so no slack is reserved
/// past it. The result is the exact body; it is moved into the stored envelope without a copy.
pub async fn read_body(
    body: axum::body::Body,
    limit: usize,
    declared: Option<u64>,
    timeout: Duration,
    reservation: &mut Reservation,
) -> Result<Vec<u8>, ReadError> {
    let read = async {
        let mut body = body;
        let mut buf: Vec<u8> = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| ReadError::Broken)?;
            let Ok(chunk) = frame.into_data() else {
                continue; // trailers
            };
            let needed = buf.len().saturating_add(chunk.len());
            if needed > limit {
                return Err(ReadError::TooLarge);
            }
            if needed > buf.capacity() {
                let mut cap = buf.capacity().saturating_mul(2).max(MIN_STEP).min(limit);
                if let Some(declared) = declared.and_then(|d| usize::try_from(d).ok())
                    && needed <= declared
                {
                    cap = cap.min(declared);
                }
                let cap = cap.max(needed);
                let extra = cap - buf.capacity();
                if !reservation.grow(u64::try_from(extra).unwrap_or(u64::MAX)) {
                    return Err(ReadError::OverBudget);
                }
                buf.reserve_exact(cap - buf.len());
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf)
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(result) => result,
        Err(_) => Err(ReadError::Timeout),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_share_the_budget_and_give_it_back_on_drop() {
        let budget = BodyBudget::new(100);
        let mut a = budget.reservation();
        let mut b = budget.reservation();
        assert!(a.grow(60));
        assert!(!b.grow(41), "over the budget");
        assert!(b.grow(40));
        assert_eq!(budget.in_use(), 100);
        drop(a);
        assert_eq!(budget.in_use(), 40);
        drop(b);
        assert_eq!(budget.in_use(), 0);
    }

    #[tokio::test]
    async fn a_body_is_read_within_its_reservation_and_refused_when_the_budget_is_spent() {
        let budget = BodyBudget::new(64 * 1024);
        let mut first = budget.reservation();
        let body = axum::body::Body::from(vec![7u8; 40 * 1024]);
        let read = read_body(
            body,
            1 << 20,
            Some(40 * 1024),
            Duration::from_secs(5),
            &mut first,
        )
        .await
        .expect("fits");
        assert_eq!(read.len(), 40 * 1024);
        assert!(first.held() >= 40 * 1024 && first.held() <= 64 * 1024);
        let mut second = budget.reservation();
        let body = axum::body::Body::from(vec![7u8; 40 * 1024]);
        let refused = read_body(body, 1 << 20, None, Duration::from_secs(5), &mut second).await;
        assert_eq!(refused, Err(ReadError::OverBudget));
        drop(second);
        drop(first);
        assert_eq!(budget.in_use(), 0);
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_refused_while_reading() {
        let budget = BodyBudget::new(1 << 20);
        let mut r = budget.reservation();
        let body = axum::body::Body::from(vec![1u8; 2000]);
        let out = read_body(body, 1000, None, Duration::from_secs(5), &mut r).await;
        assert_eq!(out, Err(ReadError::TooLarge));
    }
}
