//! `webhook-relay channels …` and `webhook-relay dead-letters …`: the common admin tasks from a
//! shell, calling the admin API of a running relay. Output is a readable table, or the API's
//! JSON with `--json`. The admin token comes from `WEBHOOK_CONNECT_ADMIN_TOKEN` or a file, never
//! from a flag (command lines are visible to other users).

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

/// One admin task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Task {
    /// `channels list`
    ChannelsList,
    /// `channels create --file DEF.json`
    ChannelsCreate {
        /// The channel definition (JSON text).
        definition: String,
    },
    /// `channels rotate NAME [--grace SECONDS]`
    ChannelsRotate {
        /// Channel.
        channel: String,
        /// Grace period.
        grace_seconds: Option<u64>,
    },
    /// `dead-letters list CHANNEL [--limit N]`
    DeadLettersList {
        /// Channel.
        channel: String,
        /// Page size.
        limit: Option<u32>,
    },
    /// `dead-letters replay CHANNEL [MESSAGE_ID]`
    DeadLettersReplay {
        /// Channel.
        channel: String,
        /// One message, or all.
        message_id: Option<String>,
    },
    /// `dead-letters purge CHANNEL [MESSAGE_ID]`
    DeadLettersPurge {
        /// Channel.
        channel: String,
        /// One message, or all.
        message_id: Option<String>,
    },
}

/// Where and how to call.
#[derive(Debug, Clone)]
pub struct Target {
    /// Relay base URL, e.g. `http://127.0.0.1:8000`.
    pub base_url: String,
    /// Admin token.
    pub token: String,
    /// Print the API's JSON instead of a table.
    pub json: bool,
}

fn request(task: &Task) -> (Method, String, Option<String>) {
    let ch = |c: &str| format!("/admin/webhook-connect/channels/{c}");
    match task {
        Task::ChannelsList => (Method::GET, "/admin/webhook-connect/channels".into(), None),
        Task::ChannelsCreate { definition } => (
            Method::POST,
            "/admin/webhook-connect/channels".into(),
            Some(definition.clone()),
        ),
        Task::ChannelsRotate {
            channel,
            grace_seconds,
        } => (
            Method::POST,
            format!("{}/rotate-token", ch(channel)),
            grace_seconds.map(|g| format!("{{\"grace_period_seconds\":{g}}}")),
        ),
        Task::DeadLettersList { channel, limit } => (
            Method::GET,
            format!(
                "{}/dead-letters?limit={}",
                ch(channel),
                limit.unwrap_or(100)
            ),
            None,
        ),
        Task::DeadLettersReplay {
            channel,
            message_id: Some(id),
        } => (
            Method::POST,
            format!("{}/dead-letters/{id}/replay", ch(channel)),
            None,
        ),
        Task::DeadLettersReplay {
            channel,
            message_id: None,
        } => (
            Method::POST,
            format!("{}/dead-letters/replay", ch(channel)),
            None,
        ),
        Task::DeadLettersPurge {
            channel,
            message_id: Some(id),
        } => (
            Method::DELETE,
            format!("{}/dead-letters/{id}", ch(channel)),
            None,
        ),
        Task::DeadLettersPurge {
            channel,
            message_id: None,
        } => (
            Method::DELETE,
            format!("{}/dead-letters", ch(channel)),
            None,
        ),
    }
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (i, c) in row.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut out = vec![line(headers.iter().map(|h| (*h).to_owned()).collect())];
    out.extend(rows.into_iter().map(line));
    out.join("\n")
}

fn render(task: &Task, body: &Value) -> String {
    match task {
        Task::ChannelsList => table(
            &["NAME", "SOURCE", "WEBHOOKS", "CONNECTED", "PAUSED"],
            body.as_array()
                .into_iter()
                .flatten()
                .map(|c| {
                    vec![
                        cell(&c["name"]),
                        cell(&c["source"]),
                        cell(&c["webhook_ids"]),
                        cell(&c["connected_clients"]),
                        cell(&c["paused"]),
                    ]
                })
                .collect(),
        ),
        Task::ChannelsCreate { .. } => format!(
            "created channel {}\ntoken (shown only now): {}",
            cell(&body["name"]),
            cell(&body["token"])
        ),
        Task::ChannelsRotate { .. } => format!(
            "new token (shown only now): {}\nold token valid until: {}",
            cell(&body["new_token"]),
            cell(&body["old_token_expires_at"])
        ),
        Task::DeadLettersList { .. } => {
            let rows = body["messages"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|d| {
                    vec![
                        cell(&d["message_id"]),
                        cell(&d["webhook_id"]),
                        cell(&d["dead_letter_reason"]),
                        cell(&d["delivery_count"]),
                        cell(&d["dead_lettered_at"]),
                    ]
                })
                .collect();
            format!(
                "{}\n{} of {} shown",
                table(
                    &[
                        "MESSAGE_ID",
                        "WEBHOOK",
                        "REASON",
                        "DELIVERIES",
                        "DEAD_LETTERED_AT"
                    ],
                    rows
                ),
                cell(&body["count"]),
                cell(&body["total"])
            )
        }
        Task::DeadLettersReplay {
            message_id: Some(id),
            ..
        } => format!("replayed {id}"),
        Task::DeadLettersReplay {
            message_id: None, ..
        } => {
            format!(
                "replayed {}, remaining {}",
                cell(&body["replayed"]),
                cell(&body["remaining"])
            )
        }
        Task::DeadLettersPurge {
            message_id: Some(id),
            ..
        } => format!("purged {id}"),
        Task::DeadLettersPurge {
            message_id: None, ..
        } => format!("purged {}", cell(&body["purged"])),
    }
}

/// Runs `task`; `Ok` holds what to print, `Err` the error message (exit status 1).
pub async fn run(task: &Task, target: &Target) -> Result<String, String> {
    let (method, path, body) = request(task);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
    let mut req = client
        .request(
            method,
            format!("{}{path}", target.base_url.trim_end_matches('/')),
        )
        .bearer_auth(&target.token);
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b);
    }
    let response = req
        .send()
        .await
        .map_err(|e| format!("cannot reach the relay at {}: {e}", target.base_url))?;
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|e| format!("cannot read the answer: {e}"))?;
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if !status.is_success() {
        return Err(format!("{}: {}", status.as_u16(), cell(&body["detail"])));
    }
    if target.json {
        return Ok(serde_json::to_string_pretty(&body).unwrap_or_default());
    }
    Ok(render(task, &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let t = table(&["A", "LONGER"], vec![vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "A    LONGER\nxyz  1");
    }
}
