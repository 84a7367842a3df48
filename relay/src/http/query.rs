//! Query-string decoding shared by the handlers.

/// Decoded query pairs (lenient: undecodable bytes are replaced).
pub fn parse_query(raw: Option<&str>) -> Vec<(String, String)> {
    raw.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}
