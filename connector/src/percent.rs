//! Percent-encoding, with the `percent-encoding` crate: URL components written into connection
//! URLs and signed requests, and `%XX` escapes read back.

use std::borrow::Cow;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// Every byte but the unreserved characters of RFC 3986 (`A–Z a–z 0–9 - . _ ~`).
#[cfg_attr(
    not(any(
        feature = "rabbitmq",
        feature = "gcp_pubsub",
        feature = "s3",
        feature = "aws_sqs"
    )),
    allow(dead_code)
)] // only rabbitmq, gcp_pubsub, s3 and aws_sqs use it
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes a URL component (user name, password, vhost) so any character survives.
#[cfg_attr(
    not(any(
        feature = "rabbitmq",
        feature = "gcp_pubsub",
        feature = "s3",
        feature = "aws_sqs"
    )),
    allow(dead_code)
)] // only rabbitmq, gcp_pubsub, s3 and aws_sqs use it
pub(crate) fn percent_encode(text: &str) -> String {
    utf8_percent_encode(text, COMPONENT).to_string()
}

/// Decodes `%XX` escapes; invalid escapes stay as they are, and bytes that are not UTF-8 become
/// U+FFFD.
pub(crate) fn percent_decode(text: &str) -> Cow<'_, str> {
    percent_decode_str(text).decode_utf8_lossy()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encoding_keeps_unreserved_and_escapes_the_rest() {
        assert_eq!(percent_encode("a@b/c%d:e"), "a%40b%2Fc%25d%3Ae");
        assert_eq!(percent_encode("Az09-._~"), "Az09-._~");
        assert_eq!(percent_encode("/"), "%2F");
    }

    #[test]
    fn percent_decoding_leaves_invalid_escapes_alone() {
        assert_eq!(percent_decode("%2e%2E/%zz%4"), "../%zz%4");
        assert_eq!(percent_decode("%252e"), "%2e");
        assert_eq!(percent_decode("%C3%A9%FF"), "é\u{fffd}");
    }
}
