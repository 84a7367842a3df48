//! Delivery of buffered messages to connected connectors (`docs/reference/wire-protocol.md` C.2–C.5).
//!
//! Each channel has one [`Hub`]. Transports register a [`Conn`] per WebSocket or SSE stream and
//! per long-poll client; while at least one is registered, the hub's dispatcher leases messages
//! from the buffer and hands each to the eligible connection with the fewest in flight. Acks,
//! nacks and touches come back through [`Hub::settle`]; a connection that goes away releases its
//! leases at once.

mod conn;
mod hub;
pub(crate) mod settle;

pub use conn::{Conn, ConnInfo, Outbound};
pub use hub::{Hub, HubOptions, PollOpenError, SettleOutcome, effective_limit};
