//! What can go wrong in an admin command, printed with every cause underneath it.

use std::error::Error as StdError;
use std::fmt;

/// An admin command's failure.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The relay answered with an error status.
    #[error("{status}: {detail}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The `detail` of the error body (or the body's text).
        detail: String,
    },
    /// The relay could not be reached, or its answer not read.
    #[error("{context}")]
    Transport {
        /// What was being done.
        context: String,
        /// The HTTP client's error (its sources say why: refused, TLS, timeout, …).
        #[source]
        source: reqwest::Error,
    },
    /// A local file could not be read.
    #[error("{context}")]
    File {
        /// Which file, for what.
        context: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The command's input is not usable (bad file content, bad option value, …).
    #[error("{0}")]
    Usage(String),
    /// The relay stopped a bulk run part way (the message says how far it got).
    #[error("{0}")]
    Stopped(String),
    /// The operator did not confirm, or could not be asked.
    #[error("{0}")]
    NotConfirmed(String),
}

impl CliError {
    /// The exit status for this error: 2 for usage and local problems, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) | CliError::File { .. } => 2,
            _ => 1,
        }
    }
}

/// `error` and every `source()` below it, one per line: `error: …` then `  caused by: …`.
#[derive(Debug)]
pub struct Report<'a>(pub &'a (dyn StdError + 'static));

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut last = self.0.to_string();
        let mut source = self.0.source();
        while let Some(cause) = source {
            let text = cause.to_string();
            // Some errors repeat their source's text in their own; print each text once.
            if !last.contains(&text) {
                write!(f, "\n  caused by: {text}")?;
            }
            last = text;
            source = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_lists_every_cause() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = CliError::File {
            context: "--file def.json".into(),
            source: io,
        };
        assert_eq!(
            Report(&e).to_string(),
            "--file def.json\n  caused by: no such file"
        );
    }
}
