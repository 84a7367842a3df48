//! The common keys of a module's connection: readers for the `connections.json` entry (with field
//! paths, `docs/reference/config-formats.md` §4.7), `host` checked by the outbound policy, `port` as an integer
//! or numeric string, secrets, client certificate files and connection URLs (`docs/reference/module-contract.md` §4).

use std::sync::LazyLock;

use serde_json::{Map, Value};
use webhook_connect_protocol::config_values::Secret;

use super::ModuleSettings;
use crate::outbound;
use crate::settings::{Problems, Reader};

static EMPTY: LazyLock<Map<String, Value>> = LazyLock::new(Map::new);

/// A reader of the named `connections.json` entry; an empty object when none is named, so every
/// key takes its default. `type` is marked as read.
pub(crate) fn connection<'a>(s: &ModuleSettings<'a>) -> Reader<'a> {
    let mut r = s
        .connection_reader()
        .unwrap_or_else(|| Reader::detached(&EMPTY, format!("{}.connection", s.path)));
    let _ = r.get("type");
    r
}

/// Records an error when the module needs a `connection` and has none.
pub(crate) fn require_connection(s: &ModuleSettings<'_>, p: &mut Problems) -> bool {
    if s.connection.is_some() {
        return true;
    }
    p.error(format!(
        "{}.connection: module '{}' requires a connection entry",
        s.path, s.module
    ));
    false
}

/// A host name or address literal, checked against the outbound policy (`docs/reference/module-contract.md` §2.3)
/// unless it is listed in `allowed` (a module's `allowed_hosts`).
pub(crate) fn host(
    r: &mut Reader<'_>,
    p: &mut Problems,
    key: &'static str,
    default: Option<&str>,
    strict: bool,
    allowed: &[String],
) -> Option<String> {
    let host = match (r.string(p, key), default) {
        (Some(h), _) => h,
        (None, Some(d)) => d.to_owned(),
        (None, None) => {
            if r.get(key).is_none() {
                r.error(p, key, "missing field");
            }
            return None;
        }
    };
    let literal = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.clone()
    };
    if host.is_empty()
        || host
            .chars()
            .any(|c| c.is_whitespace() || c == '/' || c == '@')
    {
        r.error(p, key, format!("not a host name: {host:?}"));
        return None;
    }
    if let Some(why) = outbound::check_allowing(&format!("tcp://{literal}/"), strict, allowed) {
        r.error(p, key, why);
        return None;
    }
    Some(host)
}

/// A client certificate's `tls_cert_file` and `tls_key_file`, which come both or neither:
/// `Some(None)` for neither; `None`, with the error recorded, for one without the other.
#[cfg_attr(not(any(feature = "mqtt", feature = "redis")), allow(dead_code))] // only mqtt and redis use it
pub(crate) fn client_cert_files(
    r: &mut Reader<'_>,
    p: &mut Problems,
    cert: Option<String>,
    key: Option<String>,
) -> Option<Option<(String, String)>> {
    match (cert, key) {
        (Some(c), Some(k)) => Some(Some((c, k))),
        (None, None) => Some(None),
        (Some(_), None) => {
            r.error(p, "tls_key_file", "required with tls_cert_file");
            None
        }
        (None, Some(_)) => {
            r.error(p, "tls_cert_file", "required with tls_key_file");
            None
        }
    }
}

/// A TCP port: an integer or a numeric string in 1–65535.
pub(crate) fn port(r: &mut Reader<'_>, p: &mut Problems, key: &'static str, default: u16) -> u16 {
    let n = r.integer_in(p, key, i64::from(default), 1, 65535);
    u16::try_from(n).unwrap_or(default)
}

/// A secret string (password, token, URL with credentials).
pub(crate) fn secret(r: &mut Reader<'_>, p: &mut Problems, key: &'static str) -> Option<Secret> {
    r.string(p, key).map(Secret::new)
}

/// A URL given as a connection key: a secret (it may hold credentials) whose scheme is one of
/// `schemes` and whose host passes the outbound policy.
#[cfg_attr(
    not(any(
        feature = "rabbitmq",
        feature = "nats",
        feature = "gcp_pubsub",
        feature = "postgresql",
        feature = "mysql",
        feature = "s3",
        feature = "aws_sqs",
        feature = "redis"
    )),
    allow(dead_code)
)] // only modules with connection URLs use it
pub(crate) fn url(
    r: &mut Reader<'_>,
    p: &mut Problems,
    key: &'static str,
    schemes: &[&str],
    strict: bool,
) -> Option<Secret> {
    let text = r.string(p, key)?;
    let Some((scheme, rest)) = text.split_once("://") else {
        r.error(
            p,
            key,
            format!("must be a URL ({}://…)", schemes.join("://…, ")),
        );
        return None;
    };
    if !schemes.contains(&scheme.to_ascii_lowercase().as_str()) {
        r.error(
            p,
            key,
            format!(
                "scheme must be one of {}, got {scheme:?}",
                schemes.join(", ")
            ),
        );
        return None;
    }
    // Credentials are allowed in a connection URL; only the host is checked.
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let hostport = authority.rsplit('@').next().unwrap_or_default();
    if let Some(why) = outbound::check(&format!("tcp://{hostport}/"), strict) {
        r.error(p, key, why);
        return None;
    }
    Some(Secret::new(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_accept_numeric_strings_and_reject_out_of_range() {
        let mut m = Map::new();
        m.insert("port".into(), Value::from("61613"));
        m.insert("bad".into(), Value::from(70000));
        let mut p = Problems::default();
        let mut r = Reader::detached(&m, "connections.json: c".into());
        assert_eq!(port(&mut r, &mut p, "port", 1), 61613);
        assert!(p.is_ok());
        assert_eq!(port(&mut r, &mut p, "bad", 7), 7);
        assert!(p.errors[0].contains("connections.json: c.bad"), "{p:?}");
    }

    #[test]
    fn hosts_pass_the_outbound_policy() {
        let mut m = Map::new();
        m.insert("host".into(), Value::from("10.1.2.3"));
        m.insert("meta".into(), Value::from("169.254.169.254"));
        let mut p = Problems::default();
        let mut r = Reader::detached(&m, "c".into());
        assert_eq!(
            host(&mut r, &mut p, "host", None, false, &[]).as_deref(),
            Some("10.1.2.3")
        );
        assert!(host(&mut r, &mut p, "meta", None, false, &[]).is_none());
        let allowed = ["169.254.169.254".to_owned()];
        assert!(host(&mut r, &mut p, "meta", None, false, &allowed).is_some());
        assert!(host(&mut r, &mut p, "host", None, true, &[]).is_none());
        assert!(host(&mut r, &mut p, "absent", None, false, &[]).is_none());
        assert_eq!(p.errors.len(), 3, "{p:?}");
    }
}
