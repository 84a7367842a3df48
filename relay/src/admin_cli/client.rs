//! The HTTP side of the admin commands: where the relay is, how to trust it (`--cacert`,
//! `--insecure`), and one call that turns the relay's answer into JSON or a [`CliError`].

use std::path::PathBuf;
use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Method;
use serde_json::Value;

use super::confirm::Confirm;
use super::error::CliError;
use super::table::cell;

/// Where the admin API is.
pub const API: &str = "/admin/webhook-connect";

/// Path segments keep `-`, `_`, `.` and `~`; everything else is percent-encoded.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `value` as one URL path segment.
pub fn segment(value: &str) -> String {
    utf8_percent_encode(value, SEGMENT).to_string()
}

/// `value` as a query-string value.
fn query_value(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// `?k=v&…` of the pairs whose value is set (empty when none is).
pub fn query(pairs: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", query_value(v))))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// Where and how to call, and how to talk to the operator.
#[derive(Debug, Clone)]
pub struct Target {
    /// Relay base URL, e.g. `http://127.0.0.1:8000`.
    pub base_url: String,
    /// Admin token.
    pub token: String,
    /// Print the API's JSON instead of a table.
    pub json: bool,
    /// A PEM file of CA certificates to trust besides the system's (`--cacert`).
    pub cacert: Option<PathBuf>,
    /// Accept any server certificate (`--insecure`).
    pub insecure: bool,
    /// How destructive commands are confirmed.
    pub confirm: Confirm,
    /// Draw progress bars on standard error.
    pub progress: bool,
}

impl Target {
    /// A target at `base_url` with `token`: tables, no TLS options, no confirmation asked
    /// (`--yes`), no progress bar — what a test or a script wants.
    pub fn new(base_url: &str, token: &str) -> Target {
        Target {
            base_url: base_url.to_owned(),
            token: token.to_owned(),
            json: false,
            cacert: None,
            insecure: false,
            confirm: Confirm::Yes,
            progress: false,
        }
    }
}

/// The admin API of one relay.
#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    /// A client for `target`, trusting its `--cacert` (or anything with `--insecure`).
    pub fn new(target: &Target) -> Result<Client, CliError> {
        let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(60));
        if let Some(path) = &target.cacert {
            let pem = std::fs::read(path).map_err(|source| CliError::File {
                context: format!("--cacert {}", path.display()),
                source,
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|source| {
                CliError::Transport {
                    context: format!("--cacert {}: not a PEM certificate bundle", path.display()),
                    source,
                }
            })?;
            if certs.is_empty() {
                return Err(CliError::Usage(format!(
                    "--cacert {}: no certificate in the file",
                    path.display()
                )));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        if target.insecure {
            builder = builder.danger_accept_invalid_certs(true);
        }
        let http = builder.build().map_err(|source| CliError::Transport {
            context: "cannot build the HTTP client".into(),
            source,
        })?;
        Ok(Client {
            http,
            base: target.base_url.trim_end_matches('/').to_owned(),
            token: target.token.clone(),
        })
    }

    /// Calls `method` on `path` (below [`API`]) with an optional JSON body; the answer's JSON
    /// (or its text as a string) on success.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, CliError> {
        let url = format!("{}{API}{path}", self.base);
        let mut request = self
            .http
            .request(method.clone(), &url)
            .bearer_auth(&self.token);
        if let Some(b) = body {
            request = request.json(b);
        }
        let response = request.send().await.map_err(|source| CliError::Transport {
            context: format!("cannot reach the relay: {method} {url}"),
            source,
        })?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|source| CliError::Transport {
                context: format!("cannot read the relay's answer to {method} {url}"),
                source,
            })?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if !status.is_success() {
            let detail = match &body["detail"] {
                Value::Null => cell(&body),
                d => cell(d),
            };
            return Err(CliError::Api {
                status: status.as_u16(),
                detail,
            });
        }
        Ok(body)
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Result<Value, CliError> {
        self.call(Method::GET, path, None).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_and_query_values_are_encoded() {
        assert_eq!(segment("orders-1_a.b"), "orders-1_a.b");
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
        assert_eq!(
            query(&[
                ("limit", Some("5".into())),
                ("cursor", None),
                ("before", Some("2026-01-01T00:00:00+00:00".into())),
            ]),
            "?limit=5&before=2026-01-01T00%3A00%3A00%2B00%3A00"
        );
        assert_eq!(query(&[("cursor", None)]), "");
    }
}
