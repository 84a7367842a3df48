//! `basic_auth` (§2.2).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, HeaderValue};
use webhook_connect_protocol::config_values::Secret;

use super::ct::ct_eq;
use super::rejection::Rejection;

#[derive(Debug)]
pub(crate) struct BasicMethod {
    pub username: Secret,
    pub password: Secret,
}

fn fail(detail: &str) -> Rejection {
    Rejection::unauthorized(detail).with_header(
        http::header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"Webhook API\""),
    )
}

/// True for the base64 alphabet of `^[A-Za-z0-9+/]*={0,2}$`.
fn is_base64_text(b: &[u8]) -> bool {
    let body_end = b.iter().position(|&c| c == b'=').unwrap_or(b.len());
    let (body, pad) = b.split_at(body_end);
    pad.len() <= 2
        && pad.iter().all(|&c| c == b'=')
        && body
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/')
}

impl BasicMethod {
    pub fn check(&self, headers: &HeaderMap) -> Result<(), Rejection> {
        let Some(value) = headers.get(http::header::AUTHORIZATION) else {
            return Err(fail("Missing Authorization header"));
        };
        let raw = value.as_bytes();
        let (scheme, rest) = match raw.iter().position(|&c| c == b' ') {
            Some(i) => (&raw[..i], Some(&raw[i + 1..])),
            None => (raw, None),
        };
        if !scheme.eq_ignore_ascii_case(b"basic") {
            return Err(fail("Basic authentication required"));
        }
        let encoded = match rest {
            Some(r) if !r.is_empty() && is_base64_text(r) => r,
            _ => return Err(fail("Invalid base64 encoding format")),
        };
        let Ok(decoded) = STANDARD.decode(encoded) else {
            return Err(fail("Invalid base64 encoding in Authorization header"));
        };
        let text: String = match String::from_utf8(decoded) {
            Ok(s) => s,
            Err(e) => e.into_bytes().iter().map(|&b| char::from(b)).collect(),
        };
        let Some((user, pass)) = text.split_once(':') else {
            return Err(fail("Invalid basic auth format"));
        };
        let user_ok = ct_eq(user.as_bytes(), self.username.expose().as_bytes());
        let pass_ok = ct_eq(pass.as_bytes(), self.password.expose().as_bytes());
        if user_ok & pass_ok {
            Ok(())
        } else {
            Err(fail("Invalid credentials"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn method() -> BasicMethod {
        BasicMethod {
            username: Secret::new("alice"),
            password: Secret::new("pa:ss"),
        }
    }

    fn check(v: Option<&str>) -> Result<(), String> {
        let mut h = HeaderMap::new();
        if let Some(v) = v {
            h.insert(http::header::AUTHORIZATION, v.parse().expect("value"));
        }
        method().check(&h).map_err(|r| {
            assert_eq!(r.status, 401);
            r.detail
        })
    }

    #[test]
    fn basic_auth_passes_with_password_containing_colon() {
        let v = format!("Basic {}", STANDARD.encode("alice:pa:ss"));
        assert_eq!(check(Some(&v)), Ok(()));
        let v = format!("basic {}", STANDARD.encode("alice:pa:ss"));
        assert_eq!(check(Some(&v)), Ok(()));
    }

    #[test]
    fn basic_auth_failures_have_exact_messages_r124() {
        assert_eq!(check(None).unwrap_err(), "Missing Authorization header");
        assert_eq!(
            check(Some("Bearer x")).unwrap_err(),
            "Basic authentication required"
        );
        assert_eq!(
            check(Some("Basic  YWxpY2U6cGE6c3M=")).unwrap_err(),
            "Invalid base64 encoding format"
        );
        assert_eq!(
            check(Some("Basic ab$c")).unwrap_err(),
            "Invalid base64 encoding format"
        );
        assert_eq!(
            check(Some("Basic abc")).unwrap_err(),
            "Invalid base64 encoding in Authorization header"
        );
        let v = format!("Basic {}", STANDARD.encode("alicepass"));
        assert_eq!(check(Some(&v)).unwrap_err(), "Invalid basic auth format");
        let v = format!("Basic {}", STANDARD.encode("alice:wrong"));
        assert_eq!(check(Some(&v)).unwrap_err(), "Invalid credentials");
        let v = format!("Basic {}", STANDARD.encode("bob:pa:ss"));
        assert_eq!(check(Some(&v)).unwrap_err(), "Invalid credentials");
    }

    #[test]
    fn basic_auth_falls_back_to_latin1() {
        let m = BasicMethod {
            username: Secret::new("jos\u{e9}"),
            password: Secret::new("p"),
        };
        let mut h = HeaderMap::new();
        let v = format!("Basic {}", STANDARD.encode(b"jos\xe9:p"));
        h.insert(http::header::AUTHORIZATION, v.parse().expect("value"));
        assert!(m.check(&h).is_ok());
    }
}
