//! The moto server the `s3` and `aws_sqs` tests talk to (`docs/reference/module-contract.md` §9): its endpoint from
//! `TEST_S3_ENDPOINT` / `TEST_SQS_ENDPOINT` (default `http://127.0.0.1:5000`, started by
//! scripts/services.sh), and the connection entry that points a module at it. moto accepts any
//! credentials, so the tests' own setup and read-back requests go unsigned.

use serde_json::{Value, json};

use crate::sinks::{env_or, require_server};

/// The endpoint in `var`, after checking that it answers.
pub async fn endpoint(var: &str) -> String {
    let url = env_or(var, "http://127.0.0.1:5000");
    let authority = url
        .split("://")
        .nth(1)
        .unwrap_or("127.0.0.1:5000")
        .trim_end_matches('/');
    require_server(var, authority).await;
    url.trim_end_matches('/').to_owned()
}

/// A connection entry of `kind` for `endpoint_url`.
pub fn connection(kind: &str, endpoint_url: &str) -> Value {
    json!({
        "type": kind,
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
        "region": "us-east-1",
        "endpoint_url": endpoint_url,
    })
}

/// An HTTP client for the tests' own requests to moto's `service` (`s3`, `sqs`). moto does not
/// check signatures, but treats a request without `Authorization` as anonymous (and refuses it
/// private objects) and picks the service from its credential scope, so every request carries a
/// well-formed, unverified one for the `testing` key.
pub fn http(service: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/{service}/aws4_request, \
         SignedHeaders=host, Signature=00"
    );
    headers.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_str(&auth).expect("header value"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("HTTP client")
}
