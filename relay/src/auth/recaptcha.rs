//! `recaptcha` (§9): token from a header or the JSON body, verified at `verify_url`.

use std::net::IpAddr;

use http::{HeaderMap, HeaderName};
use serde_json::{Map, Value};
use webhook_connect_protocol::config_values::Secret;

use super::outbound::form_body;
use super::rejection::Rejection;

/// The default verification endpoint.
pub(crate) const DEFAULT_VERIFY_URL: &str = "https://www.google.com/recaptcha/api/siteverify";

#[derive(Debug)]
pub(crate) enum TokenSource {
    Header(HeaderName, String),
    /// An explicitly configured body field, or `None` for the default field names.
    Body(Option<String>),
}

#[derive(Debug)]
pub(crate) struct RecaptchaMethod {
    pub secret_key: Secret,
    pub v3: bool,
    pub source: TokenSource,
    pub min_score: f64,
    pub verify_url: String,
    pub client: reqwest::Client,
}

const BODY_DEFAULT_FIELDS: [&str; 3] = ["recaptcha_token", "recaptcha", "g-recaptcha-response"];

fn unavailable() -> Rejection {
    Rejection::unavailable("reCAPTCHA verification unavailable", 5)
}

/// Formats a float like Python's `str()` for the threshold (`0.5`, `1.0`).
fn py_float(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}

impl RecaptchaMethod {
    fn token(&self, headers: &HeaderMap, body: &[u8]) -> Result<String, Rejection> {
        match &self.source {
            TokenSource::Header(name, display) => headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| {
                    Rejection::unauthorized(format!(
                        "Missing reCAPTCHA token (expected in header: {display})"
                    ))
                }),
            TokenSource::Body(field) => {
                let parsed: Option<Map<String, Value>> = serde_json::from_slice(body).ok();
                let found = parsed.as_ref().and_then(|obj| match field {
                    Some(f) => obj.get(f).and_then(Value::as_str),
                    None => BODY_DEFAULT_FIELDS
                        .iter()
                        .find_map(|f| obj.get(*f).and_then(Value::as_str)),
                });
                found
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        Rejection::unauthorized(format!(
                            "Missing reCAPTCHA token (expected in body: {})",
                            field.as_deref().unwrap_or("recaptcha_token")
                        ))
                    })
            }
        }
    }

    pub async fn check(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        client_ip: IpAddr,
    ) -> Result<(), Rejection> {
        let token = self.token(headers, body)?;
        let ip = client_ip.to_string();
        let mut fields = vec![
            ("secret", self.secret_key.expose()),
            ("response", token.as_str()),
        ];
        if self.v3 {
            fields.push(("remoteip", ip.as_str()));
        }
        let response = match self
            .client
            .post(&self.verify_url)
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(form_body(&fields))
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e.without_url(), "reCAPTCHA verification failed");
                return Err(unavailable());
            }
        };
        if !response.status().is_success() {
            tracing::warn!(status = %response.status(), "reCAPTCHA verification failed");
            return Err(unavailable());
        }
        let Ok(body) = response.bytes().await else {
            return Err(unavailable());
        };
        let Ok(result) = serde_json::from_slice::<Map<String, Value>>(&body) else {
            return Err(unavailable());
        };
        if result.get("success") != Some(&Value::Bool(true)) {
            let codes: Vec<&str> = result
                .get("error-codes")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let why = if codes.is_empty() {
                "Verification failed".to_string()
            } else {
                codes.join(", ")
            };
            return Err(Rejection::unauthorized(format!(
                "reCAPTCHA verification failed: {why}"
            )));
        }
        if self.v3 {
            let score = result.get("score").and_then(Value::as_f64).unwrap_or(0.0);
            if score < self.min_score {
                return Err(Rejection::unauthorized(format!(
                    "reCAPTCHA score {score:.2} below threshold {}",
                    py_float(self.min_score)
                )));
            }
        }
        Ok(())
    }
}
