//! Integration tests of the connector (one binary). Forwarding and configuration tests use a real
//! local HTTP target; the stream tests are scripted-peer tests (see `streams`), because
//! end-to-end tests against the real relay live in tests/ and come with the relay.

#![allow(clippy::unwrap_used)] // test code: a panic is a test failure

mod command_line;
mod config;
mod forwarding;
mod fuzz_corpus;
mod hostile_relay;
mod module_config;
mod module_outputs;
#[cfg(any(feature = "s3", feature = "aws_sqs"))]
mod moto;
mod operations;
#[cfg(all(feature = "redis", feature = "nats", feature = "mqtt"))]
mod operator_process;
#[cfg(all(feature = "redis", feature = "nats", feature = "mqtt"))]
mod outbound_policy;
// Reads what the STOMP module sent through RabbitMQ, with lapin.
#[cfg(feature = "rabbitmq")]
mod output_activemq;
#[cfg(feature = "aws_sqs")]
mod output_aws_sqs;
#[cfg(feature = "clickhouse")]
mod output_clickhouse;
#[cfg(feature = "gcp_pubsub")]
mod output_gcp_pubsub;
#[cfg(feature = "kafka")]
mod output_kafka;
#[cfg(feature = "mqtt")]
mod output_mqtt;
#[cfg(feature = "mysql")]
mod output_mysql;
#[cfg(feature = "nats")]
mod output_nats;
#[cfg(feature = "postgresql")]
mod output_postgresql;
#[cfg(feature = "rabbitmq")]
mod output_rabbitmq;
#[cfg(feature = "redis")]
mod output_redis_publish;
#[cfg(feature = "redis")]
mod output_redis_rq;
#[cfg(feature = "s3")]
mod output_s3;
#[cfg(feature = "zeromq")]
mod output_zeromq;
mod pipeline;
#[cfg_attr(
    not(all(
        feature = "postgresql",
        feature = "mysql",
        feature = "mqtt",
        feature = "nats",
        feature = "rabbitmq",
        feature = "redis"
    )),
    allow(dead_code) // helpers of the module tests, which need the default features
)]
mod private_server;
#[cfg_attr(
    not(all(
        feature = "postgresql",
        feature = "mysql",
        feature = "mqtt",
        feature = "nats",
        feature = "rabbitmq",
        feature = "redis"
    )),
    allow(dead_code) // helpers of the module tests, which need the default features
)]
mod sinks;
mod streams;
mod support;
mod tls;
