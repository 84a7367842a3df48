//! Integration tests of the buffer backends: one binary, one module per concern.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod conformance;
mod embedded;
mod fuzz_corpus;
mod rabbitmq;
mod redis;
mod redis_cluster;
mod support;
