//! Small encoders used by the signature methods: hex and RFC 3986 percent-encoding.

/// Lower-case hex.
pub(crate) fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Decodes an even number of hex digits (either case).
pub(crate) fn hex_decode(text: &[u8]) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    text.chunks_exact(2)
        .map(|p| Some((nibble(p[0])? << 4) | nibble(p[1])?))
        .collect()
}

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
    fn hex_round_trips() {
        assert_eq!(hex_encode(&[0, 0xab, 0xff]), "00abff");
        assert_eq!(hex_decode(b"00ABff"), Some(vec![0, 0xab, 0xff]));
        assert_eq!(hex_decode(b"abc"), None);
        assert_eq!(hex_decode(b"zz"), None);
    }

    #[test]
    fn oauth_encoding_follows_rfc3986() {
        assert_eq!(oauth_encode("a b+c~d*"), "a%20b%2Bc~d%2A");
        assert_eq!(oauth_encode("\u{e9}"), "%C3%A9");
    }
}
