//! `s3` (`docs/reference/module-contract.md` §3.9, feature `s3`): one object per message, written with a signed
//! `PutObject` through the connection's shared client.
//!
//! - **Object key:** `{prefix}/{YYYY}/{MM}/{DD}/{HH}/{filename}` from the message's
//!   `received_at` (UTC); the default `filename_pattern` `webhook_{message_id}.json` makes a
//!   redelivery overwrite the same object (§2.3).
//! - **Body:** `json` (the payload indented by 2, `content_type`) or `raw` (the body bytes with
//!   their original content type). `include_headers` adds ASCII header values as
//!   `x-amz-meta-*`, at most 2 KiB in total.
//! - **Endpoint:** `endpoint_url` is honoured and then path-style addressing is the
//!   default (`force_path_style`); without it the public virtual-hosted endpoint of `region`.
//! - **Success:** a 2xx answer to the PUT. **Errors:** 5xx, `SlowDown` and timeouts are
//!   `Transient`; `AccessDenied`, `NoSuchBucket` and bad credentials `Unavailable`;
//!   `EntityTooLarge` and other 4xx `Permanent`. `setup` checks the bucket with `HeadBucket`
//!   (a refusal there is not final: a key may be allowed to put objects but not to list).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use reqwest::{Method, Url};

use super::aws::{self, AwsClient, AwsConnection};
use super::client_slot::ClientSlot;
use super::record::{self, BodyFormat};
use super::settings;
use super::shared::SharedClients;
use super::{Delivery, ErrorCategory, ModuleSettings, Output, OutputError};
use crate::percent::percent_encode;
use crate::settings::Problems;

/// Total size of the `x-amz-meta-*` headers (names and values).
const MAX_METADATA: usize = 2048;

/// Why `bucket` is not a valid bucket name, if it is not.
fn bucket_problem(bucket: &str) -> Option<&'static str> {
    if !(3..=63).contains(&bucket.len()) {
        return Some("must be 3–63 characters");
    }
    if !bucket
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
    {
        return Some("may hold only lower-case letters, digits, '-' and '.'");
    }
    None
}

/// Builds the module, recording configuration problems.
pub fn build(settings: &ModuleSettings<'_>, problems: &mut Problems) -> Option<Box<dyn Output>> {
    let before = problems.errors.len();
    let mut mc = settings.config_reader();
    let bucket = mc.checked_string(problems, "bucket", None, bucket_problem);
    let prefix = mc
        .string(problems, "prefix")
        .unwrap_or_else(|| "webhooks".to_owned())
        .trim_matches('/')
        .to_owned();
    let filename_pattern = mc
        .string(problems, "filename_pattern")
        .unwrap_or_else(|| "webhook_{message_id}.json".to_owned());
    if filename_pattern.is_empty() || filename_pattern.len() > 512 {
        mc.error(problems, "filename_pattern", "must be 1–512 characters");
    }
    let content_type = mc
        .string(problems, "content_type")
        .unwrap_or_else(|| "application/json".to_owned());
    let include_headers = mc.boolean(problems, "include_headers", false);
    let body = BodyFormat::read(&mut mc, problems, "body");
    mc.finish(problems, false);

    let (conn, mut r) = AwsConnection::read(settings, problems, "s3", &["region"]);
    let force_path_style = r.boolean(problems, "force_path_style", conn.endpoint.is_some());
    r.finish(problems, false);

    let out: Box<dyn Output> = Box::new(S3 {
        bucket: bucket?,
        prefix,
        filename_pattern,
        content_type,
        include_headers,
        body,
        force_path_style,
        conn,
        shared: settings.shared.clone(),
        client: ClientSlot::default(),
    });
    settings::unless_errors(problems, before, Some(out))
}

struct S3 {
    bucket: String,
    prefix: String,
    filename_pattern: String,
    content_type: String,
    include_headers: bool,
    body: BodyFormat,
    force_path_style: bool,
    conn: AwsConnection,
    shared: Arc<SharedClients>,
    client: ClientSlot<AwsClient>,
}

impl std::fmt::Debug for S3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// When the message was received, or now when the relay did not say.
fn received(d: &Delivery) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(&record::received_at(d))
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|_| Utc::now())
}

impl S3 {
    async fn client(&self) -> Result<Arc<AwsClient>, OutputError> {
        self.client.get_or(self.conn.client(&self.shared)).await
    }

    /// The object key of `d` (unencoded).
    fn key(&self, d: &Delivery) -> String {
        let at = received(d);
        let filename = self
            .filename_pattern
            .replace("{message_id}", &d.message_id)
            .replace("{webhook_id}", &d.webhook_id)
            .replace("{timestamp}", &at.format("%Y%m%dT%H%M%S%.6fZ").to_string())
            .replace("{uuid}", &uuid::Uuid::new_v4().to_string());
        let dated = at.format("%Y/%m/%d/%H").to_string();
        if self.prefix.is_empty() {
            format!("{dated}/{filename}")
        } else {
            format!("{}/{dated}/{filename}", self.prefix)
        }
    }

    /// The URL of `key` in the bucket (`None`: the bucket itself), each path segment encoded.
    fn url(&self, key: Option<&str>) -> Result<Url, OutputError> {
        let encoded = key
            .map(|k| {
                k.split('/')
                    .map(percent_encode)
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .unwrap_or_default();
        let text = match (&self.conn.endpoint, self.force_path_style) {
            (Some(base), true) => format!(
                "{}/{}/{encoded}",
                base.as_str().trim_end_matches('/'),
                self.bucket
            ),
            (Some(base), false) => {
                let host = base.host_str().unwrap_or_default();
                let port = base.port().map(|p| format!(":{p}")).unwrap_or_default();
                format!("{}://{}.{host}{port}/{encoded}", base.scheme(), self.bucket)
            }
            (None, true) => format!(
                "https://s3.{}.amazonaws.com/{}/{encoded}",
                self.conn.region, self.bucket
            ),
            (None, false) => format!(
                "https://{}.s3.{}.amazonaws.com/{encoded}",
                self.bucket, self.conn.region
            ),
        };
        Url::parse(&text).map_err(|e| {
            OutputError::permanent(
                ErrorCategory::InvalidData,
                format!("object URL {text:?}: {e}"),
            )
        })
    }

    /// `x-amz-meta-<name>` for ASCII header values, within [`MAX_METADATA`] bytes.
    fn metadata(&self, d: &Delivery) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if !self.include_headers {
            return out;
        }
        let mut total = 0;
        for (name, value) in &d.headers {
            let name_ok = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            let value_ok = value.bytes().all(|b| (0x20..0x7f).contains(&b));
            let header = format!("x-amz-meta-{name}");
            if !name_ok || !value_ok || total + header.len() + value.len() > MAX_METADATA {
                continue;
            }
            total += header.len() + value.len();
            out.push((header, value.trim().to_owned()));
        }
        out
    }

    fn failure(what: &str, answer: &aws::AwsResponse) -> OutputError {
        let text = String::from_utf8_lossy(&answer.body);
        let mut code = aws::xml_field(&text, "Code");
        if code.is_empty() && answer.status == 404 {
            // HeadBucket answers without a body.
            code = "NoSuchBucket";
        }
        aws::classify(what, answer.status, code, aws::xml_field(&text, "Message"))
    }
}

#[async_trait::async_trait]
impl Output for S3 {
    async fn setup(&self) -> Result<(), OutputError> {
        let client = self.client().await?;
        let answer = client
            .send(Method::HEAD, self.url(None)?, Vec::new(), Vec::new())
            .await?;
        if answer.is_success() {
            return Ok(());
        }
        match Self::failure(&format!("HeadBucket {}", self.bucket), &answer) {
            // A key allowed to put objects need not be allowed to list the bucket: only the
            // PUT itself can tell.
            e if e.category == ErrorCategory::Auth => Ok(()),
            e => Err(e),
        }
    }

    async fn process(&self, delivery: &Delivery) -> Result<(), OutputError> {
        let (bytes, content_type) = match self.body {
            BodyFormat::Json => {
                let text = serde_json::to_string_pretty(&delivery.payload).map_err(|e| {
                    OutputError::permanent(ErrorCategory::InvalidData, e.to_string())
                })?;
                (text.into_bytes(), self.content_type.clone())
            }
            BodyFormat::Raw => {
                let e = record::encode(delivery, BodyFormat::Raw)?;
                (e.bytes, e.content_type)
            }
        };
        let key = self.key(delivery);
        let mut headers = vec![("content-type".to_owned(), content_type)];
        headers.extend(self.metadata(delivery));
        let client = self.client().await?;
        let answer = client
            .send(Method::PUT, self.url(Some(&key))?, headers, bytes)
            .await?;
        if answer.is_success() {
            Ok(())
        } else {
            Err(Self::failure(&format!("PutObject {key}"), &answer))
        }
    }

    async fn teardown(&self) {
        self.client.release();
    }
}

#[cfg(test)]
mod tests {
    use super::bucket_problem;

    #[test]
    fn bucket_names_are_checked() {
        assert_eq!(bucket_problem("my-bucket.logs"), None);
        for bad in ["ab", "Upper", "under_score", &"a".repeat(64)] {
            assert!(bucket_problem(bad).is_some(), "{bad}");
        }
    }
}
