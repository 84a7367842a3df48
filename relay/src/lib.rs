//! The Webhook Connect relay: ingest, buffering, streaming to connectors, admin API.

pub mod auth;
pub mod body;
pub mod config;
