//! The Webhook Connect relay: ingest, buffering, streaming to connectors, admin API.
//!
//! Start one in-process with [`run`] on any listener (tests use `127.0.0.1:0`).
//!
//! Dependencies run one way: [`startup`] and [`server`] build and serve the [`state::AppState`];
//! `routes` is the only module that names HTTP handlers (`http`); the domain modules
//! (`channels`, `delivery`, `lifecycle`, `state_store`, `peer_acks`, [`auth`], [`body`],
//! [`config`]) know nothing of HTTP responses.

pub mod admin_cli;
mod admin_guard;
mod admission;
pub mod auth;
mod backend;
pub mod body;
mod channels;
pub mod config;
mod delivery;
#[doc(hidden)]
pub mod fuzzing;
mod http;
mod jobs;
mod lifecycle;
mod metrics;
pub mod openapi;
pub mod peer_acks;
mod routes;
mod server;
mod start_error;
pub mod startup;
mod state;
mod state_store;
mod stats;
mod tls;
mod trace;

pub use backend::open_buffer;
#[doc(hidden)]
pub use routes::served_paths;
pub use server::serve;
pub use startup::{StartError, build_state, run};
