//! The admin subcommands of `webhook-relay`: every operation of the admin API
//! (`docs/reference/http-api.md` §4–§6) from a shell, against a running relay. Output is a
//! readable table, or JSON with `--json`. The admin token comes from
//! `WEBHOOK_CONNECT_ADMIN_TOKEN` or a file, never from a flag (command lines are visible to
//! other users). Errors are printed with every cause (`caused by: …`).
//!
//! One file per command group: [`channels`], [`dead_letters`], [`messages`], [`overview`]; a new group is a
//! new file with its `…Task` enum, a [`Task`] variant and a [`Command`] variant.

mod channels;
mod client;
mod confirm;
mod dead_letters;
mod error;
mod messages;
mod overview;
mod progress;
mod table;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

pub use channels::ChannelTask;
pub use client::{Client, Target};
pub use confirm::Confirm;
pub use dead_letters::{DeadLetterTask, Filter};
pub use error::{CliError, Report};
pub use messages::MessageTask;

/// One admin task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Task {
    /// `channels …`
    Channels(ChannelTask),
    /// `dead-letters …`
    DeadLetters(DeadLetterTask),
    /// `messages …`
    Messages(MessageTask),
    /// `overview`
    Overview,
    /// `admin-health`
    Health,
}

/// Runs `task` against `target`; `Ok` holds what to print.
pub async fn run(task: &Task, target: &Target) -> Result<String, CliError> {
    let client = Client::new(target)?;
    match task {
        Task::Channels(t) => channels::run(t, &client, target).await,
        Task::DeadLetters(t) => dead_letters::run(t, &client, target).await,
        Task::Messages(t) => messages::run(t, &client, target).await,
        Task::Overview => overview::overview(&client, target).await,
        Task::Health => overview::health(&client, target).await,
    }
}

/// How to reach the admin API; these options may follow any admin subcommand.
#[derive(Debug, Clone, Args)]
pub struct ApiArgs {
    /// Relay base URL (also WEBHOOK_RELAY_URL).
    #[arg(
        long,
        global = true,
        env = "WEBHOOK_RELAY_URL",
        default_value = "http://127.0.0.1:8000"
    )]
    pub url: String,
    /// File holding the admin token (default: WEBHOOK_CONNECT_ADMIN_TOKEN).
    #[arg(long = "token-file", global = true)]
    pub token_file: Option<PathBuf>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// PEM file of CA certificates to trust (a relay behind a private CA).
    #[arg(long, global = true)]
    pub cacert: Option<PathBuf>,
    /// Do not verify the relay's TLS certificate (testing only).
    #[arg(long, global = true)]
    pub insecure: bool,
    /// Do not ask before deleting or purging (required when standard input is not a terminal).
    #[arg(long, short = 'y', global = true)]
    pub yes: bool,
}

/// The admin subcommands, as `webhook-relay` parses them.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Manage channels of a running relay through its admin API.
    Channels {
        #[command(subcommand)]
        task: ChannelTask,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Manage dead letters of a running relay through its admin API.
    DeadLetters {
        #[command(subcommand)]
        task: DeadLetterTask,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Look up messages of a running relay through its admin API.
    Messages {
        #[command(subcommand)]
        task: MessageTask,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Channels, connections and health of a running relay at a glance.
    Overview {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// The admin API's health answer (buffer, counts).
    AdminHealth {
        #[command(flatten)]
        api: ApiArgs,
    },
}

impl Command {
    fn split(self) -> (Task, ApiArgs) {
        match self {
            Command::Channels { task, api } => (Task::Channels(task), api),
            Command::DeadLetters { task, api } => (Task::DeadLetters(task), api),
            Command::Messages { task, api } => (Task::Messages(task), api),
            Command::Overview { api } => (Task::Overview, api),
            Command::AdminHealth { api } => (Task::Health, api),
        }
    }
}

fn target(api: ApiArgs) -> Result<Target, CliError> {
    let token = match &api.token_file {
        Some(path) => std::fs::read_to_string(path)
            .map(|t| {
                webhook_connect_protocol::config_values::secret_from_file_text(t)
                    .expose()
                    .to_owned()
            })
            .map_err(|source| CliError::File {
                context: format!("--token-file {}", path.display()),
                source,
            })?,
        None => std::env::var("WEBHOOK_CONNECT_ADMIN_TOKEN").unwrap_or_default(),
    };
    if token.is_empty() {
        return Err(CliError::Usage(
            "set WEBHOOK_CONNECT_ADMIN_TOKEN or pass --token-file".into(),
        ));
    }
    let confirm = if api.yes {
        Confirm::Yes
    } else if std::io::stdin().is_terminal() {
        Confirm::Ask
    } else {
        Confirm::NoTerminal
    };
    Ok(Target {
        base_url: api.url,
        token,
        json: api.json,
        cacert: api.cacert,
        insecure: api.insecure,
        confirm,
        progress: std::io::stderr().is_terminal(),
    })
}

/// Runs an admin subcommand from the command line: prints the result, or the error with its
/// causes; exit status 0, 1 (the relay refused or could not be reached) or 2 (bad usage).
pub fn main(command: Command) -> ExitCode {
    let (task, api) = command.split();
    let result = target(api).and_then(|target| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| CliError::File {
                context: "cannot start the runtime".into(),
                source,
            })?;
        runtime.block_on(run(&task, &target))
    });
    match result {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}", Report(&e));
            ExitCode::from(e.exit_code())
        }
    }
}
