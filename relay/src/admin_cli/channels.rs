//! `webhook-relay channels …`: list, show, create, update, delete, pause, resume, rotate,
//! stats, connections and disconnect (`docs/reference/http-api.md` §5–§6).

use std::path::{Path, PathBuf};

use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use super::client::{Client, Target, segment};
use super::confirm::confirm;
use super::error::CliError;
use super::table::{cell, fields, pretty, rows, table};

/// A channel command.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum ChannelTask {
    /// List channels.
    List,
    /// Show a channel: settings, statistics and connections.
    Show {
        /// Channel name.
        channel: String,
    },
    /// Create a channel from a JSON definition file (the token is printed once).
    Create {
        /// The definition ([[channels]] schema, as JSON).
        #[arg(long)]
        file: PathBuf,
    },
    /// Change an admin-created channel with a JSON merge patch (RFC 7396).
    Update {
        /// Channel name.
        channel: String,
        /// The patch (JSON object; `null` removes a setting).
        #[arg(long)]
        file: PathBuf,
    },
    /// Delete an admin-created channel (asks first unless --yes).
    Delete {
        /// Channel name.
        channel: String,
        /// Delete even with queued messages, dead letters or connections.
        #[arg(long)]
        force: bool,
    },
    /// Pause deliveries (ingest goes on).
    Pause {
        /// Channel name.
        channel: String,
    },
    /// Resume deliveries.
    Resume {
        /// Channel name.
        channel: String,
    },
    /// Rotate a channel token (the new token is printed once).
    Rotate {
        /// Channel name.
        channel: String,
        /// Seconds the old token stays valid (0–604800, default 3600).
        #[arg(long)]
        grace: Option<u64>,
    },
    /// Queue statistics of a channel.
    Stats {
        /// Channel name.
        channel: String,
        /// One row per webhook id instead of the channel's totals.
        #[arg(long)]
        per_webhook: bool,
    },
    /// Connections of a channel.
    Connections {
        /// Channel name.
        channel: String,
    },
    /// Close one connection (its leased messages are delivered again).
    Disconnect {
        /// Channel name.
        channel: String,
        /// Connection id (see `channels connections`).
        connection_id: String,
    },
}

fn channel_path(channel: &str) -> String {
    format!("/channels/{}", segment(channel))
}

fn read_json(path: &Path) -> Result<Value, CliError> {
    let text = std::fs::read_to_string(path).map_err(|source| CliError::File {
        context: format!("--file {}", path.display()),
        source,
    })?;
    serde_json::from_str(&text)
        .map_err(|e| CliError::Usage(format!("--file {}: not JSON: {e}", path.display())))
}

const CONNECTION_COLUMNS: [&str; 8] = [
    "CONNECTION_ID",
    "CONNECTOR",
    "PROTOCOL",
    "VERSION",
    "REMOTE_IP",
    "CONNECTED_AT",
    "IN_FLIGHT",
    "STATE",
];
const CONNECTION_KEYS: [&str; 8] = [
    "connection_id",
    "connector_id",
    "protocol",
    "protocol_version",
    "remote_ip",
    "connected_at",
    "in_flight_count",
    "state",
];

const STATS_KEYS: [&str; 9] = [
    "messages_queued",
    "messages_in_flight",
    "messages_delivered",
    "messages_expired",
    "messages_dead_lettered",
    "dead_letters_queued",
    "oldest_queued_age_seconds",
    "connected_clients",
    "paused",
];

/// Runs `task`: what to print.
pub async fn run(task: &ChannelTask, client: &Client, target: &Target) -> Result<String, CliError> {
    let (body, text) = match task {
        ChannelTask::List => {
            let body = client.get("/channels").await?;
            let text = table(
                &["NAME", "SOURCE", "WEBHOOKS", "CONNECTED", "PAUSED"],
                rows(
                    &body,
                    &[
                        "name",
                        "source",
                        "webhook_ids",
                        "connected_clients",
                        "paused",
                    ],
                ),
            );
            (body, text)
        }
        ChannelTask::Show { channel } => {
            let body = client.get(&channel_path(channel)).await?;
            let config = &body["config"];
            let text = format!(
                "{}\n\nsettings:\n{}\n\nstatistics:\n{}\n\nconnections:\n{}",
                fields(&body, &["name", "created_at"]),
                fields(
                    config,
                    &[
                        "webhook_ids",
                        "source",
                        "paused",
                        "ttl_seconds",
                        "max_queue_size",
                        "max_message_size",
                        "max_in_flight",
                        "ack_timeout_seconds",
                        "max_connections",
                        "max_delivery_attempts",
                        "ordered",
                        "rate_limit_per_second",
                        "allowed_ips",
                        "token_rotated_at",
                        "old_token_expires_at",
                    ]
                ),
                fields(&body["stats"], &STATS_KEYS),
                table(
                    &CONNECTION_COLUMNS,
                    rows(&body["connected_clients"], &CONNECTION_KEYS)
                ),
            );
            (body, text)
        }
        ChannelTask::Create { file } => {
            let definition = read_json(file)?;
            let body = client
                .call(Method::POST, "/channels", Some(&definition))
                .await?;
            let text = format!(
                "created channel {}\ntoken (shown only now): {}",
                cell(&body["name"]),
                cell(&body["token"])
            );
            (body, text)
        }
        ChannelTask::Update { channel, file } => {
            let patch = read_json(file)?;
            let body = client
                .call(Method::PATCH, &channel_path(channel), Some(&patch))
                .await?;
            let text = format!("updated channel {}", cell(&body["name"]));
            (body, text)
        }
        ChannelTask::Delete { channel, force } => {
            let stats = client
                .get(&format!("{}/stats", channel_path(channel)))
                .await?;
            confirm(
                target.confirm,
                &format!(
                    "Delete channel {channel} with {} queued, {} in flight, {} dead letters and {} connections?",
                    cell(&stats["messages_queued"]),
                    cell(&stats["messages_in_flight"]),
                    cell(&stats["dead_letters_queued"]),
                    cell(&stats["connected_clients"]),
                ),
            )?;
            let body = client
                .call(
                    Method::DELETE,
                    &format!("{}?force={force}", channel_path(channel)),
                    None,
                )
                .await?;
            let text = format!(
                "deleted channel {channel} ({} messages, {} dead letters)",
                cell(&body["messages_deleted"]),
                cell(&body["dead_letters_deleted"])
            );
            (body, text)
        }
        ChannelTask::Pause { channel } | ChannelTask::Resume { channel } => {
            let verb = if matches!(task, ChannelTask::Pause { .. }) {
                "pause"
            } else {
                "resume"
            };
            let body = client
                .call(
                    Method::POST,
                    &format!("{}/{verb}", channel_path(channel)),
                    None,
                )
                .await?;
            let text = format!("{channel}: paused {}", cell(&body["paused"]));
            (body, text)
        }
        ChannelTask::Rotate { channel, grace } => {
            let request = grace.map(|g| json!({"grace_period_seconds": g}));
            let body = client
                .call(
                    Method::POST,
                    &format!("{}/rotate-token", channel_path(channel)),
                    request.as_ref(),
                )
                .await?;
            let text = format!(
                "new token (shown only now): {}\nold token valid until: {}",
                cell(&body["new_token"]),
                cell(&body["old_token_expires_at"])
            );
            (body, text)
        }
        ChannelTask::Stats {
            channel,
            per_webhook: false,
        } => {
            let body = client
                .get(&format!("{}/stats", channel_path(channel)))
                .await?;
            let text = fields(&body, &STATS_KEYS);
            (body, text)
        }
        ChannelTask::Stats {
            channel,
            per_webhook: true,
        } => {
            let body = client
                .get(&format!("{}/webhook-stats", channel_path(channel)))
                .await?;
            let rows = body["webhooks"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(id, s)| {
                    vec![
                        id.clone(),
                        cell(&s["pending"]),
                        cell(&s["in_flight"]),
                        cell(&s["dead_letters"]),
                    ]
                })
                .collect();
            let text = table(&["WEBHOOK", "PENDING", "IN_FLIGHT", "DEAD_LETTERS"], rows);
            (body, text)
        }
        ChannelTask::Connections { channel } => {
            let details = client.get(&channel_path(channel)).await?;
            let body = details["connected_clients"].clone();
            let text = table(&CONNECTION_COLUMNS, rows(&body, &CONNECTION_KEYS));
            (body, text)
        }
        ChannelTask::Disconnect {
            channel,
            connection_id,
        } => {
            let body = client
                .call(
                    Method::DELETE,
                    &format!(
                        "{}/connections/{}",
                        channel_path(channel),
                        segment(connection_id)
                    ),
                    None,
                )
                .await?;
            let text = format!("disconnected {connection_id}");
            (body, text)
        }
    };
    Ok(if target.json { pretty(&body) } else { text })
}
