//! The HTTP side of the relay: one error type, the handlers of ingest, health and metrics, the
//! connector endpoints ([`connect`]) and the admin API ([`admin`]), and the OpenAPI document.
//! Only [`crate::routes`] puts the handlers on paths; nothing outside this module imports it
//! but the route table and the server.

pub(crate) mod admin;
pub(crate) mod connect;
pub(crate) mod dashboard;
pub(crate) mod error;
pub(crate) mod health;
pub(crate) mod ingest;
pub(crate) mod query;
