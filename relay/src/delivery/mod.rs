//! Delivery of buffered messages to connected connectors (`docs/reference/wire-protocol.md` C.2–C.5).
//!
//! Each channel has one [`Hub`]. Transports register a [`Conn`] per WebSocket or SSE stream and
//! per long-poll client; while at least one is registered, the hub's dispatcher leases messages
//! from the buffer and hands each to the eligible connection with the fewest in flight.
//!
//! - `hub.rs`: registration, the dispatcher, assignment, the periodic sweep;
//! - `conn.rs`: one connection (identity, counters, outbound queue, close);
//! - `leases.rs`: which leases a connection holds — all the relay keeps about leases (the buffer
//!   owns their state);
//! - `settle.rs`: the settle path every ack, nack, touch, release, lapse and return goes
//!   through, ending in one [`SettleOutcome`];
//! - `traced.rs`: what delivery tells the message trace (sent, and each settle's end);
//! - `requests.rs`: ack requests of the wire protocol turned into settles and their results.
//!
//! A connection that goes away releases its leases, after the settles it started have finished.

mod conn;
mod hub;
mod leases;
pub(crate) mod requests;
mod settle;
#[cfg(test)]
mod tests;
mod traced;

pub use conn::{Conn, ConnInfo, Outbound};
pub use hub::{Hub, HubOptions, PollOpenError, effective_limit};
pub use settle::SettleOutcome;
