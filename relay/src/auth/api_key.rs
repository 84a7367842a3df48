//! `header_auth` (§2.5) and `query_auth` (§2.6).

use http::{HeaderMap, HeaderName};
use webhook_connect_protocol::config_values::Secret;

use super::ct::ct_eq;
use super::rejection::Rejection;

/// Compares a presented key with the expected one, lower-casing both unless case-sensitive.
fn key_matches(presented: &str, expected: &Secret, case_sensitive: bool) -> bool {
    if case_sensitive {
        ct_eq(presented.as_bytes(), expected.expose().as_bytes())
    } else {
        ct_eq(
            presented.to_lowercase().as_bytes(),
            expected.expose().to_lowercase().as_bytes(),
        )
    }
}

#[derive(Debug)]
pub(crate) struct HeaderAuthMethod {
    pub api_key: Secret,
    /// As configured, for messages.
    pub header_display: String,
    pub header: HeaderName,
    pub case_sensitive: bool,
}

impl HeaderAuthMethod {
    pub fn check(&self, headers: &HeaderMap) -> Result<(), Rejection> {
        let Some(value) = headers.get(&self.header) else {
            return Err(Rejection::unauthorized(format!(
                "Missing required header: {}",
                self.header_display
            )));
        };
        let text = String::from_utf8_lossy(value.as_bytes());
        let invalid = || {
            Rejection::unauthorized(format!(
                "Invalid API key in header: {}",
                self.header_display
            ))
        };
        if text.trim().is_empty() {
            return Err(invalid());
        }
        if key_matches(&text, &self.api_key, self.case_sensitive) {
            Ok(())
        } else {
            Err(invalid())
        }
    }
}

/// Longest accepted query value, in characters.
const MAX_QUERY_VALUE_CHARS: usize = 1000;

#[derive(Debug)]
pub(crate) struct QueryAuthMethod {
    pub api_key: Secret,
    pub parameter_name: String,
    pub case_sensitive: bool,
}

/// True for a valid `parameter_name`: `^[A-Za-z0-9_.-]{1,100}$`.
pub(crate) fn valid_parameter_name(name: &str) -> bool {
    (1..=100).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

impl QueryAuthMethod {
    pub fn check(&self, uri: &http::Uri) -> Result<(), Rejection> {
        let name = &self.parameter_name;
        let query = uri.query().unwrap_or("");
        let mut found: Option<String> = None;
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            if k == name.as_str() {
                if found.is_some() {
                    return Err(Rejection::unauthorized(format!(
                        "Duplicate query parameter: {name}"
                    )));
                }
                found = Some(v.into_owned());
            }
        }
        let Some(value) = found else {
            return Err(Rejection::unauthorized(format!(
                "Missing required query parameter: {name}"
            )));
        };
        if value.chars().count() > MAX_QUERY_VALUE_CHARS
            || value
                .chars()
                .any(|c| matches!(c, '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}'))
        {
            return Err(Rejection::unauthorized(format!(
                "Invalid query parameter value for: {name} (too long or contains invalid characters)"
            )));
        }
        if value.is_empty() || !key_matches(&value, &self.api_key, self.case_sensitive) {
            return Err(Rejection::unauthorized(format!(
                "Invalid API key in query parameter: {name}"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_method(case_sensitive: bool) -> HeaderAuthMethod {
        HeaderAuthMethod {
            api_key: Secret::new("AbC123"),
            header_display: "X-API-Key".into(),
            header: HeaderName::from_static("x-api-key"),
            case_sensitive,
        }
    }

    fn headers(v: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = v {
            h.insert("X-Api-KEY", v.parse().expect("value"));
        }
        h
    }

    #[test]
    fn header_auth_is_case_insensitive_by_default() {
        let m = header_method(false);
        assert!(m.check(&headers(Some("abc123"))).is_ok());
        let m = header_method(true);
        assert_eq!(
            m.check(&headers(Some("abc123"))).map_err(|r| r.detail),
            Err("Invalid API key in header: X-API-Key".into())
        );
        assert!(m.check(&headers(Some("AbC123"))).is_ok());
    }

    #[test]
    fn header_auth_failures_have_exact_messages() {
        let m = header_method(false);
        assert_eq!(
            m.check(&headers(None)).map_err(|r| r.detail),
            Err("Missing required header: X-API-Key".into())
        );
        assert_eq!(
            m.check(&headers(Some("   "))).map_err(|r| r.detail),
            Err("Invalid API key in header: X-API-Key".into())
        );
        assert_eq!(
            m.check(&headers(Some("wrong"))).map_err(|r| r.detail),
            Err("Invalid API key in header: X-API-Key".into())
        );
    }

    fn query(q: &str) -> Result<(), String> {
        let m = QueryAuthMethod {
            api_key: Secret::new("k 1"),
            parameter_name: "api_key".into(),
            case_sensitive: false,
        };
        let uri: http::Uri = format!("/webhook/x{q}").parse().expect("uri");
        m.check(&uri).map_err(|r| r.detail)
    }

    #[test]
    fn query_auth_decodes_and_compares() {
        assert_eq!(query("?api_key=K%201"), Ok(()));
        assert_eq!(query("?a=1&api_key=k+1"), Ok(()));
        assert_eq!(
            query(""),
            Err("Missing required query parameter: api_key".into())
        );
        assert_eq!(
            query("?api_key=k%201&api_key=k%201"),
            Err("Duplicate query parameter: api_key".into())
        );
        assert_eq!(
            query("?api_key=k%0A1"),
            Err("Invalid query parameter value for: api_key (too long or contains invalid characters)".into())
        );
        let long = format!("?api_key={}", "a".repeat(1001));
        assert_eq!(
            query(&long),
            Err("Invalid query parameter value for: api_key (too long or contains invalid characters)".into())
        );
        assert_eq!(
            query("?api_key="),
            Err("Invalid API key in query parameter: api_key".into())
        );
        assert_eq!(
            query("?api_key=nope"),
            Err("Invalid API key in query parameter: api_key".into())
        );
    }

    #[test]
    fn parameter_names_are_validated() {
        assert!(valid_parameter_name("api_key.v-2"));
        assert!(!valid_parameter_name(""));
        assert!(!valid_parameter_name("a b"));
        assert!(!valid_parameter_name(&"a".repeat(101)));
    }
}
