//! `webhook-relay overview` and `webhook-relay admin-health`: the relay at a glance
//! (`docs/reference/http-api.md` §5.9, §4).

use super::client::{Client, Target};
use super::error::CliError;
use super::table::{cell, fields, pretty, table};

/// `GET /overview`: one row per channel under a line of totals.
pub async fn overview(client: &Client, target: &Target) -> Result<String, CliError> {
    let body = client.get("/overview").await?;
    if target.json {
        return Ok(pretty(&body));
    }
    let rows = body["channels"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, c)| {
            vec![
                name.clone(),
                cell(&c["webhook_id"]),
                cell(&c["messages_queued"]),
                cell(&c["connected_clients"]),
                cell(&c["paused"]),
            ]
        })
        .collect();
    Ok(format!(
        "buffer reachable: {}, {} channels, {} connections\n{}",
        cell(&body["health"]["buffer"]),
        cell(&body["total_channels"]),
        cell(&body["total_connections"]),
        table(
            &["CHANNEL", "WEBHOOK", "QUEUED", "CONNECTED", "PAUSED"],
            rows
        )
    ))
}

/// `GET /health` of the admin API.
pub async fn health(client: &Client, target: &Target) -> Result<String, CliError> {
    let body = client.get("/health").await?;
    Ok(if target.json {
        pretty(&body)
    } else {
        fields(
            &body,
            &[
                "status",
                "buffer",
                "channels_count",
                "connections_count",
                "timestamp",
            ],
        )
    })
}
