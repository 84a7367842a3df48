//! RFC 3986 percent-encoding and decoding for the OAuth 1.0 signature base string.

/// Every byte but RFC 3986's unreserved set `A–Z a–z 0–9 - . _ ~` is encoded.
const OAUTH_ENCODE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// RFC 3986 percent-encoding with the unreserved set `A–Z a–z 0–9 - . _ ~` (RFC 5849 §3.6).
pub(crate) fn oauth_encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, OAUTH_ENCODE).to_string()
}

/// Percent-decoding (`+` is kept as is), invalid UTF-8 replaced.
pub(crate) fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oauth_encoding_follows_rfc3986() {
        assert_eq!(oauth_encode("a b+c~d*"), "a%20b%2Bc~d%2A");
        assert_eq!(oauth_encode("\u{e9}"), "%C3%A9");
    }
}
