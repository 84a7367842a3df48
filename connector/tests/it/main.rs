//! Integration tests of the connector (one binary). Forwarding and configuration tests use a real
//! local HTTP target; the stream tests are scripted-peer tests (see `streams`), because
//! end-to-end tests against the real relay live in tests/ and come with the relay.

#![allow(clippy::unwrap_used)] // test code: a panic is a test failure

mod config;
mod forwarding;
mod module_config;
mod module_outputs;
#[cfg(any(feature = "s3", feature = "aws_sqs"))]
mod moto;
mod operations;
mod outbound_policy;
mod output_activemq;
#[cfg(feature = "aws_sqs")]
mod output_aws_sqs;
#[cfg(feature = "clickhouse")]
mod output_clickhouse;
#[cfg(feature = "gcp_pubsub")]
mod output_gcp_pubsub;
#[cfg(feature = "kafka")]
mod output_kafka;
mod output_mqtt;
mod output_mysql;
mod output_nats;
mod output_postgresql;
mod output_rabbitmq;
mod output_redis_publish;
mod output_redis_rq;
#[cfg(feature = "s3")]
mod output_s3;
#[cfg(feature = "zeromq")]
mod output_zeromq;
mod pipeline;
mod private_server;
mod sinks;
mod streams;
mod support;
mod tls;
