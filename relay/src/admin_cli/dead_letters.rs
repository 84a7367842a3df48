//! `webhook-relay dead-letters …`: list (any number, paged by cursor), show, replay and purge
//! of one message or of every match, with a progress bar (`docs/reference/http-api.md` §5.8,
//! §6.5). Bulk runs loop over the API's bulk operations a page at a time, so no count is too
//! large.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::client::{Client, Target, query, segment};
use super::confirm::confirm;
use super::error::CliError;
use super::progress::Progress;
use super::table::{cell, fields, pretty, rows, table};

/// The largest page the API serves, and the size of each bulk step.
const PAGE: u64 = 1000;

/// Which dead letters a command applies to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
pub struct Filter {
    /// Only those of this webhook id.
    #[arg(long)]
    pub webhook: Option<String>,
    /// Only those dead-lettered for this reason.
    #[arg(long, value_parser = ["rejected", "max_attempts", "expired"])]
    pub reason: Option<String>,
}

/// A dead-letter command.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum DeadLetterTask {
    /// List dead letters of a channel, newest first.
    List {
        /// Channel name.
        channel: String,
        #[command(flatten)]
        filter: Filter,
        /// How many to show (any number; fetched 1000 at a time). Default 100.
        #[arg(long)]
        limit: Option<u64>,
        /// Continue after a previous listing (its `next page: --cursor …`).
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Show one dead letter with its headers and body.
    Show {
        /// Channel name.
        channel: String,
        /// Message id.
        message_id: String,
    },
    /// Replay one dead letter, or every one that matches (oldest first).
    Replay {
        /// Channel name.
        channel: String,
        /// One message id; every match when omitted.
        #[arg(conflicts_with_all = ["webhook", "reason", "limit"])]
        message_id: Option<String>,
        #[command(flatten)]
        filter: Filter,
        /// Replay at most this many.
        #[arg(long)]
        limit: Option<u64>,
    },
    /// Delete one dead letter, or every one that matches (asks first unless --yes).
    Purge {
        /// Channel name.
        channel: String,
        /// One message id; every match when omitted.
        #[arg(conflicts_with_all = ["webhook", "reason", "before"])]
        message_id: Option<String>,
        #[command(flatten)]
        filter: Filter,
        /// Only those dead-lettered before this time (RFC 3339).
        #[arg(long)]
        before: Option<String>,
    },
}

fn base(channel: &str) -> String {
    format!("/channels/{}/dead-letters", segment(channel))
}

/// How many dead letters the channel (or one webhook of it) holds now.
async fn count(client: &Client, channel: &str, webhook: &Option<String>) -> Result<u64, CliError> {
    let page = client
        .get(&format!(
            "{}{}",
            base(channel),
            query(&[("limit", Some("1".into())), ("webhook_id", webhook.clone())])
        ))
        .await?;
    Ok(page["total"].as_u64().unwrap_or(0))
}

/// Runs `task`: what to print.
pub async fn run(
    task: &DeadLetterTask,
    client: &Client,
    target: &Target,
) -> Result<String, CliError> {
    match task {
        DeadLetterTask::List {
            channel,
            filter,
            limit,
            cursor,
        } => {
            list(
                client,
                target,
                channel,
                filter,
                limit.unwrap_or(100),
                cursor,
            )
            .await
        }
        DeadLetterTask::Show {
            channel,
            message_id,
        } => {
            let body = client
                .get(&format!("{}/{}", base(channel), segment(message_id)))
                .await?;
            if target.json {
                return Ok(pretty(&body));
            }
            Ok(show(&body))
        }
        DeadLetterTask::Replay {
            channel,
            message_id: Some(id),
            ..
        } => {
            let body = client
                .call(
                    Method::POST,
                    &format!("{}/{}/replay", base(channel), segment(id)),
                    None,
                )
                .await?;
            Ok(if target.json {
                pretty(&body)
            } else {
                format!("replayed {id}")
            })
        }
        DeadLetterTask::Replay {
            channel,
            message_id: None,
            filter,
            limit,
        } => replay_all(client, target, channel, filter, *limit).await,
        DeadLetterTask::Purge {
            channel,
            message_id: Some(id),
            ..
        } => {
            confirm(
                target.confirm,
                &format!("Purge dead letter {id} of channel {channel}?"),
            )?;
            let body = client
                .call(
                    Method::DELETE,
                    &format!("{}/{}", base(channel), segment(id)),
                    None,
                )
                .await?;
            Ok(if target.json {
                pretty(&body)
            } else {
                format!("purged {id}")
            })
        }
        DeadLetterTask::Purge {
            channel,
            message_id: None,
            filter,
            before,
        } => purge_all(client, target, channel, filter, before).await,
    }
}

async fn list(
    client: &Client,
    target: &Target,
    channel: &str,
    filter: &Filter,
    want: u64,
    cursor: &Option<String>,
) -> Result<String, CliError> {
    if want == 0 {
        return Err(CliError::Usage("--limit must be at least 1".into()));
    }
    let mut messages: Vec<Value> = Vec::new();
    let mut cursor = cursor.clone();
    let mut total: Value;
    loop {
        let page = PAGE.min(want - messages.len() as u64);
        let body = client
            .get(&format!(
                "{}{}",
                base(channel),
                query(&[
                    ("limit", Some(page.to_string())),
                    ("cursor", cursor.clone()),
                    ("webhook_id", filter.webhook.clone()),
                    ("reason", filter.reason.clone()),
                ])
            ))
            .await?;
        total = body["total"].clone();
        messages.extend(body["messages"].as_array().into_iter().flatten().cloned());
        cursor = body["next_cursor"].as_str().map(str::to_owned);
        if messages.len() as u64 >= want || cursor.is_none() {
            break;
        }
    }
    let body = json!({
        "channel": channel,
        "count": messages.len(),
        "total": total,
        "next_cursor": cursor,
        "messages": messages,
    });
    if target.json {
        return Ok(pretty(&body));
    }
    let mut text = format!(
        "{}\n{} of {} shown",
        table(
            &[
                "MESSAGE_ID",
                "WEBHOOK",
                "REASON",
                "DELIVERIES",
                "DEAD_LETTERED_AT",
                "LAST_ERROR",
            ],
            rows(
                &body["messages"],
                &[
                    "message_id",
                    "webhook_id",
                    "dead_letter_reason",
                    "delivery_count",
                    "dead_lettered_at",
                    "last_error",
                ],
            ),
        ),
        cell(&body["count"]),
        cell(&total)
    );
    if let Some(c) = &cursor {
        text.push_str(&format!("\nnext page: --cursor {c}"));
    }
    Ok(text)
}

fn show(body: &Value) -> String {
    let headers = match &body["headers"] {
        Value::Object(h) => h
            .iter()
            .map(|(k, v)| format!("  {k}: {}", cell(v)))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    };
    let payload = match body["body"].as_str() {
        Some(b64) => match BASE64.decode(b64) {
            Ok(bytes) => String::from_utf8(bytes)
                .unwrap_or_else(|e| format!("({} bytes, not UTF-8)", e.as_bytes().len())),
            Err(_) => b64.to_owned(),
        },
        None => "(not stored)".into(),
    };
    format!(
        "{}\n\nheaders:\n{headers}\n\nbody:\n{payload}",
        fields(
            body,
            &[
                "message_id",
                "channel",
                "webhook_id",
                "timestamp",
                "dead_lettered_at",
                "dead_letter_reason",
                "delivery_count",
                "last_error",
                "content_type",
                "expires_at",
            ]
        )
    )
}

/// Replays every match in steps of [`PAGE`] until none is left, the run has replayed as many
/// as matched at its start (a message that fails again is not replayed twice), `limit` is
/// reached, or the relay stops the step (queue full).
async fn replay_all(
    client: &Client,
    target: &Target,
    channel: &str,
    filter: &Filter,
    limit: Option<u64>,
) -> Result<String, CliError> {
    let mut cap = limit.unwrap_or(u64::MAX);
    let estimate = count(client, channel, &filter.webhook).await?.min(cap);
    let mut bar = Progress::new("replayed", estimate, target.progress);
    let mut remaining = 0;
    let mut stopped = None;
    let mut first = true;
    while bar.done() < cap {
        let mut request = Map::new();
        request.insert("limit".into(), json!(PAGE.min(cap - bar.done())));
        if let Some(w) = &filter.webhook {
            request.insert("webhook_id".into(), json!(w));
        }
        if let Some(r) = &filter.reason {
            request.insert("reason".into(), json!(r));
        }
        let step = client
            .call(
                Method::POST,
                &format!("{}/replay", base(channel)),
                Some(&Value::Object(request)),
            )
            .await?;
        let replayed = step["replayed"].as_u64().unwrap_or(0);
        remaining = step["remaining"].as_u64().unwrap_or(0);
        if first {
            cap = cap.min(replayed + remaining);
            first = false;
        }
        bar.advance(replayed);
        if let Some(s) = step["stopped"].as_str() {
            stopped = Some(s.to_owned());
            break;
        }
        if replayed == 0 || remaining == 0 {
            break;
        }
    }
    let replayed = bar.done();
    bar.finish();
    if let Some(why) = stopped {
        return Err(CliError::Stopped(format!(
            "replay of {channel} stopped by the relay ({why}) after {replayed}; {remaining} remain"
        )));
    }
    let body = json!({"channel": channel, "replayed": replayed, "remaining": remaining});
    Ok(if target.json {
        pretty(&body)
    } else {
        format!("replayed {replayed}, remaining {remaining}")
    })
}

/// Purges every match after asking: one bulk call without a reason or time filter, otherwise
/// steps of [`PAGE`] until a step finds none.
async fn purge_all(
    client: &Client,
    target: &Target,
    channel: &str,
    filter: &Filter,
    before: &Option<String>,
) -> Result<String, CliError> {
    let held = count(client, channel, &filter.webhook).await?;
    let narrowed = filter.reason.is_some() || before.is_some();
    let scope = match &filter.webhook {
        Some(w) => format!("channel {channel}, webhook {w}"),
        None => format!("channel {channel}"),
    };
    let question = if narrowed {
        format!("Purge the matching dead letters of {scope} (up to {held})?")
    } else {
        format!("Purge all {held} dead letters of {scope}?")
    };
    confirm(target.confirm, &question)?;
    let mut bar = Progress::new("purged", held, target.progress);
    loop {
        let step = client
            .call(
                Method::DELETE,
                &format!(
                    "{}{}",
                    base(channel),
                    query(&[
                        ("webhook_id", filter.webhook.clone()),
                        ("reason", filter.reason.clone()),
                        ("before", before.clone()),
                        ("limit", narrowed.then(|| PAGE.to_string())),
                    ])
                ),
                None,
            )
            .await?;
        let purged = step["purged"].as_u64().unwrap_or(0);
        bar.advance(purged);
        if !narrowed || purged == 0 || bar.done() >= held {
            break;
        }
    }
    let purged = bar.done();
    bar.finish();
    let body = json!({"channel": channel, "purged": purged});
    Ok(if target.json {
        pretty(&body)
    } else {
        format!("purged {purged}")
    })
}
