//! `webhook-relay messages show MESSAGE_ID`: the trace of one message — its state, when it was
//! accepted, and every delivery attempt (`docs/reference/http-api.md`, message trace).

use clap::Subcommand;

use super::client::{Client, Target, segment};
use super::error::CliError;
use super::table::{cell, pretty, table};

/// A message command.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum MessageTask {
    /// Show the trace of one message: state, accepted-at and every delivery attempt.
    Show {
        /// Message id.
        message_id: String,
    },
}

/// Runs `task`: what to print.
pub async fn run(task: &MessageTask, client: &Client, target: &Target) -> Result<String, CliError> {
    match task {
        MessageTask::Show { message_id } => {
            let body = client
                .get(&format!("/messages/{}", segment(message_id)))
                .await?;
            Ok(if target.json {
                pretty(&body)
            } else {
                message_trace(&body)
            })
        }
    }
}

/// The message, then one row per delivery attempt.
fn message_trace(body: &serde_json::Value) -> String {
    let rows = body["attempts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            vec![
                cell(&a["at"]),
                cell(&a["connection_id"]),
                cell(&a["transport"]),
                cell(&a["outcome"]),
                cell(&a["target_status"]),
                cell(&a["error"]),
                cell(&a["response_snippet"])
                    .chars()
                    .take(60)
                    .collect::<String>()
                    .replace(['\n', '\r'], " "),
            ]
        })
        .collect();
    format!(
        "message   {}\nchannel   {}\nwebhook   {}\nstate     {}\naccepted  {}\nreplays   {}\n\n{}",
        cell(&body["message_id"]),
        cell(&body["channel"]),
        cell(&body["webhook_id"]),
        cell(&body["state"]),
        cell(&body["accepted_at"]),
        cell(&body["replays"]),
        table(
            &[
                "AT",
                "CONNECTION",
                "TRANSPORT",
                "OUTCOME",
                "STATUS",
                "ERROR",
                "RESPONSE"
            ],
            rows
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_trace_prints_each_attempt() {
        let body = serde_json::json!({
            "message_id": "msg_1", "channel": "c", "webhook_id": "w", "state": "dead_lettered",
            "accepted_at": "t0", "replays": 0,
            "attempts": [{"at": "t1", "connection_id": "wsc_1", "transport": "websocket",
                "outcome": "nacked", "target_status": 500, "error": "target returned 500",
                "response_snippet": "oops\nmore"}]
        });
        let out = message_trace(&body);
        assert!(out.contains("state     dead_lettered"), "{out}");
        assert!(out.contains("nacked"), "{out}");
        assert!(out.contains("500"), "{out}");
        assert!(out.contains("oops more"), "{out}");
    }
}
