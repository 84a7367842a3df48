//! What the `s3` and `aws_sqs` modules share (`docs/reference/module-contract.md` §3.9, §3.10, §4): the AWS
//! connection keys, one signing HTTP client per connection entry, Signature Version 4 over
//! `reqwest`, and the mapping of AWS error codes to [`ErrorKind`](super::ErrorKind)s.
//!
//! The requests are signed here rather than through the AWS SDK: two small REST calls per module
//! do not justify the SDK's several hundred crates on a 2-core build machine, and `reqwest`,
//! `hmac` and `sha2` are already in the workspace.
//!
//! Credentials come from the connection entry, else from `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN` (read per request). Profile files and instance
//! metadata are not consulted.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use reqwest::{Method, Url};
use sha2::{Digest, Sha256};
use webhook_connect_protocol::config_values::Secret;

use super::connection_keys;
use super::error_mapping;
use super::shared::{SharedClients, client_key};
use super::{ErrorCategory, ModuleSettings, OutputError};
use crate::outbound::PolicyResolver;
use crate::percent::percent_encode;
use crate::settings::Problems;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Access key, secret and optional session token.
#[derive(Debug, Clone)]
pub(crate) struct Credentials {
    pub(crate) access_key_id: String,
    pub(crate) secret_access_key: Secret,
    pub(crate) session_token: Option<Secret>,
}

impl Credentials {
    /// The standard environment variables, when both key variables are set.
    fn from_env() -> Option<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Some(Credentials {
            access_key_id: var("AWS_ACCESS_KEY_ID")?,
            secret_access_key: Secret::new(var("AWS_SECRET_ACCESS_KEY")?),
            session_token: var("AWS_SESSION_TOKEN").map(Secret::new),
        })
    }
}

/// The connection keys of an AWS module, as read at load.
#[derive(Debug, Clone)]
pub(crate) struct AwsConnection {
    key: String,
    service: &'static str,
    pub(crate) region: String,
    /// `endpoint_url`, honoured; `None` means the public AWS endpoint.
    pub(crate) endpoint: Option<Url>,
    credentials: Option<Credentials>,
    /// `outbound_policy: strict`, applied to every address the endpoint resolves to.
    strict: bool,
}

impl AwsConnection {
    /// Reads the connection entry (or nothing, when the module names none). `region_keys` lists
    /// the accepted spellings of the region, the first preferred. Leaves the reader unfinished
    /// for module-specific keys (`force_path_style`) and returns it.
    pub(crate) fn read<'a>(
        s: &ModuleSettings<'a>,
        p: &mut Problems,
        service: &'static str,
        region_keys: &[&'static str],
    ) -> (Self, crate::settings::Reader<'a>) {
        let mut r = connection_keys::connection(s);
        let access_key_id = r.string(p, "aws_access_key_id");
        let secret = connection_keys::secret(&mut r, p, "aws_secret_access_key");
        let session_token = connection_keys::secret(&mut r, p, "aws_session_token");
        let credentials = match (access_key_id, secret) {
            (Some(id), Some(secret)) => Some(Credentials {
                access_key_id: id,
                secret_access_key: secret,
                session_token,
            }),
            (None, None) => None,
            (Some(_), None) => {
                r.error(p, "aws_secret_access_key", "needed with aws_access_key_id");
                None
            }
            (None, Some(_)) => {
                r.error(p, "aws_access_key_id", "needed with aws_secret_access_key");
                None
            }
        };
        let mut region = None;
        for key in region_keys {
            if let Some(value) = r.string(p, key) {
                region.get_or_insert(value);
            }
        }
        let region = region.unwrap_or_else(|| "us-east-1".to_owned());
        if region.is_empty()
            || !region
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            r.error(p, region_keys[0], format!("not an AWS region: {region:?}"));
        }
        let endpoint = connection_keys::url(
            &mut r,
            p,
            "endpoint_url",
            &["http", "https"],
            s.outbound_strict,
        )
        .and_then(|u| match Url::parse(u.expose()) {
            Ok(url) if url.username().is_empty() && url.password().is_none() => Some(url),
            Ok(_) => {
                r.error(p, "endpoint_url", "must not contain user-info");
                None
            }
            Err(e) => {
                r.error(p, "endpoint_url", format!("not a URL: {e}"));
                None
            }
        });
        let empty = serde_json::Map::new();
        let conn = AwsConnection {
            key: client_key(
                service,
                s.connection_name.unwrap_or("<default>"),
                s.connection.unwrap_or(&empty),
            ),
            service,
            region,
            endpoint,
            credentials,
            strict: s.outbound_strict,
        };
        (conn, r)
    }

    /// The instance's handle on the connection's shared client (made without I/O).
    pub(crate) async fn client(
        &self,
        shared: &Arc<SharedClients>,
    ) -> Result<Arc<AwsClient>, OutputError> {
        shared
            .get_or_connect(&self.key, || async {
                let http = reqwest::Client::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .timeout(REQUEST_TIMEOUT)
                    .redirect(reqwest::redirect::Policy::none())
                    .dns_resolver(PolicyResolver::new(self.strict, &[]))
                    .build()
                    .map_err(|e| {
                        OutputError::unavailable(
                            ErrorCategory::Other,
                            format!("building the {} HTTP client: {e}", self.service),
                        )
                    })?;
                Ok(AwsClient {
                    http,
                    service: self.service,
                    region: self.region.clone(),
                    credentials: self.credentials.clone(),
                })
            })
            .await
    }
}

/// One HTTP client that signs for one service and region.
#[derive(Debug)]
pub(crate) struct AwsClient {
    http: reqwest::Client,
    service: &'static str,
    region: String,
    credentials: Option<Credentials>,
}

/// An answer of the service.
#[derive(Debug)]
pub(crate) struct AwsResponse {
    pub(crate) status: u16,
    /// `x-amzn-query-error` (SQS), when present.
    #[cfg_attr(not(feature = "aws_sqs"), allow(dead_code))]
    pub(crate) query_error: Option<String>,
    pub(crate) body: Vec<u8>,
}

impl AwsResponse {
    pub(crate) fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

impl AwsClient {
    /// Signs and sends one request. Network failures and timeouts are `Transient`; any HTTP
    /// answer is returned for the caller to classify.
    pub(crate) async fn send(
        &self,
        method: Method,
        url: Url,
        mut headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> Result<AwsResponse, OutputError> {
        let credentials = self
            .credentials
            .clone()
            .or_else(Credentials::from_env)
            .ok_or_else(|| {
                OutputError::unavailable(
                    ErrorCategory::Auth,
                    "no AWS credentials: set aws_access_key_id and aws_secret_access_key in the \
                     connection or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
                )
            })?;
        let now = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
        let payload_hash = hex::encode(Sha256::digest(&body));
        headers.push(("x-amz-date".into(), now.clone()));
        headers.push(("x-amz-content-sha256".into(), payload_hash.clone()));
        if let Some(token) = &credentials.session_token {
            headers.push(("x-amz-security-token".into(), token.expose().to_owned()));
        }
        let authorization = sign(
            &credentials,
            &self.region,
            self.service,
            &Request {
                method: method.as_str(),
                url: &url,
                headers: &headers,
                payload_hash: &payload_hash,
                amz_date: &now,
            },
        );
        let mut req = self.http.request(method, url).body(body);
        for (name, value) in &headers {
            req = req.header(name.as_str(), value.as_str());
        }
        req = req.header("authorization", authorization);
        let what = format!("{} request", self.service);
        let response = req
            .send()
            .await
            .map_err(|e| error_mapping::http_error(&what, &e))?;
        let status = response.status().as_u16();
        let query_error = response
            .headers()
            .get("x-amzn-query-error")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).to_owned());
        let body = response
            .bytes()
            .await
            .map_err(|e| error_mapping::http_error(&what, &e))?
            .to_vec();
        Ok(AwsResponse {
            status,
            query_error,
            body,
        })
    }
}

/// What is signed of a request.
#[derive(Debug)]
pub(crate) struct Request<'a> {
    pub(crate) method: &'a str,
    pub(crate) url: &'a Url,
    /// Headers to sign besides `host`, names in lower case.
    pub(crate) headers: &'a [(String, String)],
    pub(crate) payload_hash: &'a str,
    /// `YYYYMMDDTHHMMSSZ`.
    pub(crate) amz_date: &'a str,
}

/// The `Authorization` header of AWS Signature Version 4 for `req`.
pub(crate) fn sign(creds: &Credentials, region: &str, service: &str, req: &Request<'_>) -> String {
    let host = match (req.url.host_str(), req.url.port()) {
        (Some(h), Some(port)) => format!("{h}:{port}"),
        (Some(h), None) => h.to_owned(),
        (None, _) => String::new(),
    };
    let mut headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_owned()))
        .chain(std::iter::once(("host".to_owned(), host)))
        .collect();
    headers.sort();
    let signed_headers = headers
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let mut query: Vec<(String, String)> = req
        .url
        .query_pairs()
        .map(|(k, v)| (percent_encode(&k), percent_encode(&v)))
        .collect();
    query.sort();
    let canonical_query = query
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let canonical_request = format!(
        "{}\n{}\n{canonical_query}\n{canonical_headers}\n{signed_headers}\n{}",
        req.method,
        req.url.path(),
        req.payload_hash
    );
    let date = req.amz_date.get(..8).unwrap_or(req.amz_date);
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{}\n{scope}\n{}",
        req.amz_date,
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let secret = format!("AWS4{}", creds.secret_access_key.expose());
    let mut key = hmac(secret.as_bytes(), date.as_bytes());
    for part in [region, service, "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    let signature = hex::encode(hmac(&key, string_to_sign.as_bytes()));
    format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
        creds.access_key_id
    )
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// Classifies a failed answer (`docs/reference/module-contract.md` §3.9, §3.10 error tables): throttling and 5xx are
/// `Transient`; authentication, permission and a missing bucket or queue `Unavailable`;
/// other 4xx (too large, invalid contents) `Permanent`.
pub(crate) fn classify(what: &str, status: u16, code: &str, message: &str) -> OutputError {
    const THROTTLED: &[&str] = &[
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestThrottled",
        "RequestLimitExceeded",
        "TooManyRequestsException",
    ];
    const TRANSIENT: &[&str] = &[
        "InternalError",
        "ServiceUnavailable",
        "RequestTimeout",
        "RequestTimeTooSkewed",
    ];
    const AUTH: &[&str] = &[
        "AccessDenied",
        "AccessDeniedException",
        "InvalidAccessKeyId",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "UnrecognizedClientException",
        "MissingAuthenticationToken",
    ];
    const MISSING: &[&str] = &[
        "NoSuchBucket",
        "NonExistentQueue",
        "QueueDoesNotExist",
        "AWS.SimpleQueueService.NonExistentQueue",
        "QueueDeletedRecently",
    ];
    let text = match (code.is_empty(), message.is_empty()) {
        (true, _) => format!("{what}: HTTP {status}"),
        (false, true) => format!("{what}: HTTP {status} {code}"),
        (false, false) => format!("{what}: HTTP {status} {code}: {message}"),
    };
    let has = |list: &[&str]| list.contains(&code);
    if has(THROTTLED) || status == 429 || status == 503 {
        OutputError::transient(ErrorCategory::RateLimited, text)
    } else if has(TRANSIENT) || status >= 500 || status == 408 {
        OutputError::transient(ErrorCategory::ServerError, text)
    } else if has(AUTH) || status == 401 || status == 403 {
        OutputError::unavailable(ErrorCategory::Auth, text)
    } else if has(MISSING) {
        OutputError::unavailable(ErrorCategory::ClientError, text)
    } else if code == "EntityTooLarge" || code == "InvalidMessageContents" || status == 413 {
        OutputError::permanent(ErrorCategory::InvalidData, text)
    } else {
        OutputError::permanent(ErrorCategory::ClientError, text)
    }
}

/// The text of the first `<tag>…</tag>` in an XML error body.
#[cfg_attr(not(feature = "s3"), allow(dead_code))]
pub(crate) fn xml_field<'a>(body: &'a str, tag: &str) -> &'a str {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    body.split_once(open.as_str())
        .and_then(|(_, rest)| rest.split_once(close.as_str()))
        .map_or("", |(value, _)| value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::ErrorKind;

    /// The GetObject example of the S3 documentation ("Example: GET Object", header-based
    /// authentication with SigV4).
    #[test]
    fn signature_matches_the_documented_s3_example() {
        let creds = Credentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
            session_token: None,
        };
        let url = Url::parse("https://examplebucket.s3.amazonaws.com/test.txt").expect("url");
        let empty = hex::encode(Sha256::digest(b""));
        let headers = vec![
            ("range".to_owned(), "bytes=0-9".to_owned()),
            ("x-amz-content-sha256".to_owned(), empty.clone()),
            ("x-amz-date".to_owned(), "20130524T000000Z".to_owned()),
        ];
        let auth = sign(
            &creds,
            "us-east-1",
            "s3",
            &Request {
                method: "GET",
                url: &url,
                headers: &headers,
                payload_hash: &empty,
                amz_date: "20130524T000000Z",
            },
        );
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn error_codes_map_to_the_spec_kinds() {
        let kind = |status, code| classify("x", status, code, "").kind;
        assert_eq!(kind(503, "SlowDown"), ErrorKind::Transient);
        assert_eq!(kind(500, "InternalError"), ErrorKind::Transient);
        assert_eq!(kind(403, "AccessDenied"), ErrorKind::Unavailable);
        assert_eq!(kind(404, "NoSuchBucket"), ErrorKind::Unavailable);
        assert_eq!(kind(400, "QueueDoesNotExist"), ErrorKind::Unavailable);
        assert_eq!(kind(400, "EntityTooLarge"), ErrorKind::Permanent);
        assert_eq!(kind(400, "InvalidMessageContents"), ErrorKind::Permanent);
        assert_eq!(kind(400, "Throttling"), ErrorKind::Transient);
    }

    #[test]
    fn xml_fields_are_found_or_empty() {
        let body = "<Error><Code>NoSuchBucket</Code><Message>gone</Message></Error>";
        assert_eq!(xml_field(body, "Code"), "NoSuchBucket");
        assert_eq!(xml_field(body, "Message"), "gone");
        assert_eq!(xml_field(body, "Missing"), "");
    }
}
