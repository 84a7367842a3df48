//! Asking before destructive commands (`channels delete`, `dead-letters purge`): `--yes` skips
//! the question; without a terminal to ask on, the command refuses unless `--yes` was given.

use std::io::{BufRead, Write};

use super::error::CliError;

/// How the operator answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirm {
    /// `--yes`: go ahead.
    Yes,
    /// Ask on the terminal (standard input is one).
    Ask,
    /// Standard input is not a terminal and `--yes` was not given: refuse.
    NoTerminal,
}

/// `Ok` when the operator agreed to `question`.
pub fn confirm(how: Confirm, question: &str) -> Result<(), CliError> {
    match how {
        Confirm::Yes => Ok(()),
        Confirm::NoTerminal => Err(CliError::NotConfirmed(format!(
            "{question} Not confirmed: standard input is not a terminal; pass --yes"
        ))),
        Confirm::Ask => {
            eprint!("{question} [y/N] ");
            let _ = std::io::stderr().flush();
            let mut answer = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut answer)
                .map_err(|e| CliError::NotConfirmed(format!("cannot read the answer: {e}")))?;
            if matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
                Ok(())
            } else {
                Err(CliError::NotConfirmed("cancelled".into()))
            }
        }
    }
}
