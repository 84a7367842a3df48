//! Opening the configured buffer backend, and the stand-in used while a broker is still down
//! at start-up ([`LateBuffer`]).

mod late;

use std::sync::Arc;
use std::time::Duration;

use webhook_connect_buffer::{
    BufferError, EmbeddedBuffer, EmbeddedOptions, RabbitBuffer, RabbitOptions, RedisBuffer,
    RedisOptions, SharedBuffer,
};
use webhook_connect_protocol::redact::mask_url;

pub(crate) use late::LateBuffer;

use crate::config::{BackendKind, RelayConfig};
use crate::start_error::StartError;

/// Opens the configured buffer backend.
pub async fn open_buffer(config: &RelayConfig) -> Result<SharedBuffer, StartError> {
    match config.backend {
        BackendKind::Embedded => {
            let e = &config.file.buffer.embedded;
            if let Some(dir) = std::path::Path::new(&e.path).parent()
                && !dir.as_os_str().is_empty()
            {
                std::fs::create_dir_all(dir)?;
            }
            let options = EmbeddedOptions {
                commit_max_delay: Duration::from_millis(e.commit_max_delay_ms),
                operation_timeout: Duration::from_millis(5000),
            };
            Ok(Arc::new(EmbeddedBuffer::open(&e.path, options).await?))
        }
        BackendKind::Redis => {
            let r = &config.file.buffer.redis;
            let options = RedisOptions {
                url: r.url.expose().to_owned(),
                cluster_nodes: r.cluster_node_urls(),
                wait_replicas: u32::try_from(r.wait_replicas).unwrap_or(u32::MAX),
                key_prefix: r.key_prefix.clone(),
                operation_timeout: Duration::from_millis(r.operation_timeout_ms),
            };
            let buffer = RedisBuffer::connect(options)
                .await
                .map_err(|e| at_address(e, r.url.expose()))?;
            Ok(Arc::new(buffer))
        }
        BackendKind::RabbitMq => {
            let r = &config.file.buffer.rabbitmq;
            let options = RabbitOptions {
                url: r.url.expose().to_owned(),
                exchange: r.exchange.clone(),
                prefetch: u16::try_from(r.prefetch).unwrap_or(u16::MAX),
                operation_timeout: Duration::from_millis(r.operation_timeout_ms),
            };
            let buffer = RabbitBuffer::connect(options)
                .await
                .map_err(|e| at_address(e, r.url.expose()))?;
            Ok(Arc::new(buffer))
        }
    }
}

/// A failed connect that names the broker it tried (password masked), so "Redis down at
/// start" says which Redis. A timeout stays a timeout in kind: both mean "unreachable".
pub(crate) fn at_address(e: BufferError, url: &str) -> BufferError {
    let at = mask_url(url);
    match e {
        BufferError::Unavailable(why) => BufferError::Unavailable(format!("{why} (at {at})")),
        BufferError::Timeout => {
            BufferError::Unavailable(format!("no answer from {at} within the operation timeout"))
        }
        other => other,
    }
}
