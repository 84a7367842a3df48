//! Decoding and checking ingest bodies and headers (`docs/reference/auth-methods.md` §8.1, `docs/reference/http-api.md` §1.2
//! steps 5, 15 and 16).

pub mod budget;
pub mod charset;
pub mod depth;
pub mod parser;

use http::HeaderMap;
use serde_json::Value;
use serde_json::value::RawValue;

pub use crate::auth::rejection::Rejection;

/// Limits of step 5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderLimits {
    /// `server.max_header_count` (default 100).
    pub max_header_count: usize,
    /// `server.max_header_bytes` (default 8192): sum of name and value lengths.
    pub max_header_bytes: usize,
}

impl Default for HeaderLimits {
    fn default() -> Self {
        HeaderLimits {
            max_header_count: 100,
            max_header_bytes: 8192,
        }
    }
}

/// Limits of steps 15–16.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimits {
    /// `server.max_json_depth` (default 50).
    pub max_json_depth: usize,
    /// `server.max_string_length` (default 1 048 576), in Unicode scalar values.
    pub max_string_length: usize,
}

impl Default for BodyLimits {
    fn default() -> Self {
        BodyLimits {
            max_json_depth: 50,
            max_string_length: 1_048_576,
        }
    }
}

/// A parsed `data_type: json` body.
#[derive(Debug)]
pub struct ParsedBody {
    /// The parsed value: exact number text, the sender's key order, last duplicate key wins.
    pub value: Value,
    /// The same value as compact JSON text without raw newlines, for the stored `payload`.
    pub compact: Box<RawValue>,
}

fn malformed() -> Rejection {
    Rejection::bad_request("Malformed JSON payload")
}

/// True for a byte sequence containing CR, LF, NUL, U+2028 or U+2029.
fn has_forbidden(bytes: &[u8]) -> bool {
    bytes.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0)
        || bytes
            .windows(3)
            .any(|w| w == "\u{2028}".as_bytes() || w == "\u{2029}".as_bytes())
}

/// Step 5: header count, total header size and forbidden characters, in that order.
pub fn check_headers(headers: &HeaderMap, limits: &HeaderLimits) -> Result<(), Rejection> {
    let count = headers.len();
    if count > limits.max_header_count {
        return Err(Rejection::bad_request(format!(
            "Too many headers: {count} (max: {})",
            limits.max_header_count
        )));
    }
    let size: usize = headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.as_bytes().len())
        .sum();
    if size > limits.max_header_bytes {
        return Err(Rejection::bad_request(format!(
            "Headers too large: {size} bytes (max: {})",
            limits.max_header_bytes
        )));
    }
    for (name, value) in headers {
        if has_forbidden(name.as_str().as_bytes()) {
            return Err(Rejection::bad_request(
                "Invalid header name: contains forbidden character",
            ));
        }
        if has_forbidden(value.as_bytes()) {
            return Err(Rejection::bad_request(
                "Invalid header value: contains forbidden character",
            ));
        }
    }
    Ok(())
}

/// Steps 15–16 for `data_type: json`: decode by charset, parse (exact numbers, key order, last
/// duplicate wins) with an iterative parser that checks depth and string lengths (keys and
/// values) as it goes and never recurses; a syntax error anywhere wins over a limit error.
pub fn parse_json_body(
    body: &[u8],
    content_type: Option<&str>,
    limits: &BodyLimits,
) -> Result<ParsedBody, Rejection> {
    if body.is_empty() {
        return Err(malformed());
    }
    let text = charset::decode(body, charset::charset_of(content_type)).ok_or_else(malformed)?;
    let max_depth = limits.max_json_depth;
    let max_chars = limits.max_string_length;
    let value = parser::parse(&text, max_depth, max_chars).map_err(|e| match e {
        parser::ParseError::Malformed => malformed(),
        parser::ParseError::TooDeep => Rejection::bad_request(format!(
            "JSON too deeply nested: {} levels (max: {max_depth})",
            max_depth + 1
        )),
        parser::ParseError::StringTooLong(n) => {
            Rejection::bad_request(format!("String too long: {n} chars (max: {max_chars})"))
        }
    })?;
    let compact = serde_json::to_string(&value)
        .ok()
        .and_then(|s| RawValue::from_string(s).ok())
        .ok_or_else(malformed)?;
    Ok(ParsedBody { value, compact })
}

#[cfg(test)]
mod tests;
