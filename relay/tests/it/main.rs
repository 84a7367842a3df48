//! Integration tests of the relay crate (one binary, modules per area).

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod ack_allowed_ips;
mod admin_api;
mod admin_commands;
mod auth_digest_oauth1;
mod auth_fuzz;
mod auth_ingest_http;
mod auth_ip_rate;
mod auth_jwt;
mod auth_keys;
mod auth_methods;
mod auth_network;
mod auth_presets;
mod auth_support;
mod body_limits;
mod buffer_outage;
mod channel_limits;
mod command_line;
mod config_secrets;
mod connection_bounds;
mod delivery_http;
mod delivery_rabbitmq;
mod delivery_redis;
mod delivery_ws;
mod error_bodies_json;
mod flow_control;
mod fuzz_corpus;
mod graceful_stop;
mod ingest_hostile_bodies;
mod ingest_store;
mod liveness_order;
mod message_trace;
mod metrics_exposure;
mod metrics_scrape;
mod multi_instance;
mod openapi_responses;
mod openapi_routes;
mod operator_process;
mod redis_failover;
mod shipped_examples;
mod support;
mod tls_listeners;
