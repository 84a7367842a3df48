//! The Webhook Connect relay: ingest, buffering, streaming to connectors, admin API.
//!
//! Start one in-process with [`app::run`] on any listener (tests use `127.0.0.1:0`).

pub mod admin;
pub mod admin_cli;
pub mod app;
pub mod auth;
pub mod body;
pub mod channels;
pub mod config;
pub mod delivery;
pub mod health;
pub mod http_error;
pub mod ingest;
pub mod late_buffer;
pub mod metrics;
pub mod openapi;
pub mod peer_acks;
pub mod state_store;
pub mod state_sync;
pub mod stats;
pub mod tls;
pub mod transport;
