//! `authorization`: a fixed `Authorization` value, usually `Bearer <token>` (§2.1, R-124).

use http::HeaderMap;
use webhook_connect_protocol::config_values::Secret;

use super::ct::ct_eq;
use super::rejection::Rejection;

/// Longest accepted `Authorization` header, in characters.
pub(crate) const MAX_AUTHORIZATION_CHARS: usize = 8192;

#[derive(Debug)]
pub(crate) struct AuthorizationMethod {
    /// The trimmed expected value.
    expected: Secret,
    /// The expected token when the expected value has the Bearer form.
    bearer_token: Option<Secret>,
}

impl AuthorizationMethod {
    pub fn new(expected: &str) -> Self {
        let expected = expected.trim();
        let bearer_token = split_scheme(expected)
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| Secret::new(token.trim()));
        AuthorizationMethod {
            expected: Secret::new(expected),
            bearer_token,
        }
    }

    pub fn check(&self, headers: &HeaderMap) -> Result<(), Rejection> {
        let Some(value) = headers.get(http::header::AUTHORIZATION) else {
            return Err(Rejection::unauthorized("Unauthorized"));
        };
        let text = String::from_utf8_lossy(value.as_bytes());
        let chars = text.chars().count();
        if chars > MAX_AUTHORIZATION_CHARS {
            return Err(Rejection::unauthorized(format!(
                "Header too long: {chars} characters (max: {MAX_AUTHORIZATION_CHARS})"
            )));
        }
        let header = value.as_bytes().trim_ascii();
        match &self.bearer_token {
            Some(expected_token) => {
                let rest = match header.get(..7) {
                    Some(prefix) if prefix.eq_ignore_ascii_case(b"bearer ") => &header[7..],
                    _ => {
                        return Err(Rejection::unauthorized(
                            "Invalid Bearer token format: must start with 'Bearer '",
                        ));
                    }
                };
                let token = rest.trim_ascii_end();
                if token.is_empty() {
                    return Err(Rejection::unauthorized(
                        "Invalid Bearer token format: token cannot be empty",
                    ));
                }
                if token.first().is_some_and(u8::is_ascii_whitespace) {
                    return Err(Rejection::unauthorized(
                        "Invalid Bearer token format: token cannot start with whitespace",
                    ));
                }
                if ct_eq(token, expected_token.expose().as_bytes()) {
                    Ok(())
                } else {
                    Err(Rejection::unauthorized("Unauthorized"))
                }
            }
            None => {
                if ct_eq(header, self.expected.expose().as_bytes()) {
                    Ok(())
                } else {
                    Err(Rejection::unauthorized("Unauthorized"))
                }
            }
        }
    }
}

/// Splits `Scheme rest` at the first space.
pub(crate) fn split_scheme(value: &str) -> Option<(&str, &str)> {
    value.split_once(' ')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, v.parse().expect("value"));
        h
    }

    fn detail(m: &AuthorizationMethod, h: &HeaderMap) -> String {
        m.check(h).err().map(|r| r.detail).unwrap_or_default()
    }

    #[test]
    fn bearer_token_passes_and_variants_fail_r124() {
        let m = AuthorizationMethod::new("Bearer s3cret");
        assert!(m.check(&hdr("Bearer s3cret")).is_ok());
        assert!(m.check(&hdr("  Bearer s3cret  ")).is_ok());
        assert_eq!(detail(&m, &HeaderMap::new()), "Unauthorized");
        assert_eq!(detail(&m, &hdr("Bearer wrong")), "Unauthorized");
        assert_eq!(detail(&m, &hdr("Bearer s3cret x")), "Unauthorized");
        assert_eq!(detail(&m, &hdr("Bearer Bearer s3cret")), "Unauthorized");
        assert_eq!(
            detail(&m, &hdr("Token s3cret")),
            "Invalid Bearer token format: must start with 'Bearer '"
        );
        assert_eq!(
            detail(&m, &hdr("Bearer")),
            "Invalid Bearer token format: must start with 'Bearer '"
        );
        assert_eq!(
            detail(&m, &hdr("Bearer  s3cret")),
            "Invalid Bearer token format: token cannot start with whitespace"
        );
        let at_limit = format!("Bearer {}", "a".repeat(8192 - 7));
        assert_eq!(detail(&m, &hdr(&at_limit)), "Unauthorized");
        let over = format!("Bearer {}", "a".repeat(8192 - 6));
        assert_eq!(
            detail(&m, &hdr(&over)),
            "Header too long: 8193 characters (max: 8192)"
        );
        let long = format!("Bearer {}", "a".repeat(8200));
        assert_eq!(
            detail(&m, &hdr(&long)),
            "Header too long: 8207 characters (max: 8192)"
        );
    }

    #[test]
    fn plain_value_must_match_exactly() {
        let m = AuthorizationMethod::new("  Token abc ");
        assert!(m.check(&hdr("Token abc")).is_ok());
        assert_eq!(detail(&m, &hdr("Token abd")), "Unauthorized");
    }
}
