//! What the network modules share when they read their settings and talk to a server: readers
//! for `module-config` and the `connections.json` entry (with field paths, `config-formats.md`
//! §4.7), the common connection keys (`host` checked by the outbound policy, `port` as an
//! integer or numeric string, secrets; `modules.md` §4), and the timeout and I/O error mapping
//! every client uses (`modules.md` §2.4).

use std::future::Future;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use serde_json::{Map, Value};
use webhook_connect_protocol::config_values::Secret;

use super::{ErrorCategory, ModuleSettings, OutputError};
use crate::config::outbound;
use crate::settings::Problems;
use crate::settings::Reader;

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

/// `out`, unless errors were recorded since the count was `before`: a module with any load
/// error is not built.
pub(crate) fn unless_errors<T>(p: &Problems, before: usize, out: Option<T>) -> Option<T> {
    if p.errors.len() > before { None } else { out }
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

/// A host name or address literal, checked against the outbound policy (`modules.md` §2.3)
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

/// An instance's handle on its shared client: taken on first use (`setup`, or `process` after a
/// failed `setup`), dropped in `teardown` so the shared client closes once its last user is
/// gone (`modules.md` §2.2 rule 3).
pub(crate) struct ClientSlot<T>(std::sync::Mutex<Option<Arc<T>>>);

impl<T> Default for ClientSlot<T> {
    fn default() -> Self {
        ClientSlot(std::sync::Mutex::new(None))
    }
}

impl<T> std::fmt::Debug for ClientSlot<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientSlot")
    }
}

impl<T> ClientSlot<T> {
    fn current(&self) -> Option<Arc<T>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The held client, or the one `connect` gives (which is then held).
    pub(crate) async fn get_or<F>(&self, connect: F) -> Result<Arc<T>, OutputError>
    where
        F: Future<Output = Result<Arc<T>, OutputError>>,
    {
        if let Some(c) = self.current() {
            return Ok(c);
        }
        let c = connect.await?;
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        Ok(slot.get_or_insert(c).clone())
    }

    /// Hands the client over (for a teardown that must drop it off the async workers).
    #[cfg_attr(not(feature = "kafka"), allow(dead_code))] // only `kafka` needs it
    pub(crate) fn take(&self) -> Option<Arc<T>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Lets go of the client.
    pub(crate) fn release(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

/// The outbound policy at connect time (`modules.md` §2.3): resolves `host` and checks every
/// address it resolves to, so a name that leads to a refused address is refused however it was
/// written. Refusal is `Unavailable` (an operator must change the configuration); a failed lookup
/// is `Transient`/`connection`. Returns the addresses, for a client that can connect to them
/// directly and so leave no gap between the check and the connection.
pub(crate) async fn admit(
    host: &str,
    port: u16,
    strict: bool,
    allowed: &[String],
) -> Result<Vec<std::net::SocketAddr>, OutputError> {
    outbound::resolve(host, port, strict, allowed)
        .await
        .map_err(|e| match outbound::refusal_in(&e) {
            Some(refused) => OutputError::unavailable(ErrorCategory::Other, refused.to_string()),
            None => OutputError::transient(
                ErrorCategory::Connection,
                format!("cannot resolve {host}: {e}"),
            ),
        })
}

/// [`admit`] for a client given several servers (NATS `servers`, Kafka `bootstrap_servers`):
/// one refused server refuses them all; a server whose lookup fails is left out, and when none
/// is left the last lookup error is returned. Returns the positions in `servers` of those that
/// passed, in order, so the caller hands only checked servers to its library.
pub(crate) async fn admit_each(
    servers: &[(&str, u16)],
    strict: bool,
    allowed: &[String],
) -> Result<Vec<usize>, OutputError> {
    let mut admitted = Vec::with_capacity(servers.len());
    let mut failed = None;
    for (i, (host, port)) in servers.iter().enumerate() {
        match admit(host, *port, strict, allowed).await {
            Ok(_) => admitted.push(i),
            Err(e) if e.kind == super::ErrorKind::Unavailable => return Err(e),
            Err(e) => failed = Some(e),
        }
    }
    match failed {
        Some(e) if admitted.is_empty() => Err(e),
        _ => Ok(admitted),
    }
}

/// A failed HTTP request of a module: refused by the outbound policy or a TLS failure is
/// `Unavailable`, running out of time `Transient`/`timeout`, anything else
/// `Transient`/`connection`. `what` names the call; the error text never holds credentials
/// (they travel in headers).
pub(crate) fn http_error(what: &str, e: &reqwest::Error) -> OutputError {
    if let Some(refused) = outbound::refusal_in(e) {
        return OutputError::unavailable(ErrorCategory::Other, format!("{what}: {refused}"));
    }
    if crate::forward::is_tls_error(e) {
        return OutputError::unavailable(
            ErrorCategory::Connection,
            format!("{what}: TLS failure: {}", crate::forward::error_chain(e)),
        );
    }
    if e.is_timeout() {
        return OutputError::transient(ErrorCategory::Timeout, format!("{what}: timed out"));
    }
    OutputError::transient(
        ErrorCategory::Connection,
        format!("{what}: {}", crate::forward::error_chain(e)),
    )
}

/// Runs `fut` with a limit; running out is `Transient`/`timeout`.
pub(crate) async fn within<T>(
    limit: Duration,
    what: &str,
    fut: impl Future<Output = Result<T, OutputError>>,
) -> Result<T, OutputError> {
    tokio::time::timeout(limit, fut).await.unwrap_or_else(|_| {
        Err(OutputError::transient(
            ErrorCategory::Timeout,
            format!("{what}: no answer within {} s", limit.as_secs_f64()),
        ))
    })
}

/// A socket error: always `Transient`, `timeout` when it says so, else `connection`.
pub(crate) fn io_error(what: &str, e: &std::io::Error) -> OutputError {
    let category = match e.kind() {
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => ErrorCategory::Timeout,
        _ => ErrorCategory::Connection,
    };
    OutputError::transient(category, format!("{what}: {e}"))
}

/// True when `e` is a failed TLS handshake (certificate refused, alert from the peer): a
/// `rustls::Error` anywhere in its sources, also inside an `io::Error`. Drivers that wrap the
/// I/O error so that its `rustls::Error` is out of reach are recognised by rustls's messages.
pub(crate) fn is_tls_failure(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(err) = source {
        if err.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
        {
            return true;
        }
        source = err.source();
    }
    let text = e.to_string();
    [
        "invalid peer certificate",
        "received fatal alert",
        "peer is incompatible",
        "peer misbehaved",
    ]
    .iter()
    .any(|m| text.contains(m))
}

/// Percent-encodes a URL component (user name, password, vhost) so any character survives.
pub(crate) fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
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

    /// `modules.md` §2.3 at connect time: a name is judged by the addresses it resolves to;
    /// a refusal needs an operator (`Unavailable`), a failed lookup is `Transient`.
    #[tokio::test]
    async fn admit_refuses_a_name_that_resolves_to_a_refused_address() {
        use crate::output::ErrorKind;
        let e = admit("localhost", 80, true, &[]).await.unwrap_err();
        assert_eq!(
            (e.kind, e.category),
            (ErrorKind::Unavailable, ErrorCategory::Other)
        );
        assert!(
            e.message.contains("refused by outbound_policy \"strict\""),
            "{e:?}"
        );
        let addrs = admit("localhost", 80, false, &[]).await.unwrap();
        assert!(!addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 80));
        assert!(
            admit("LOCALHOST", 80, true, &["localhost".into()])
                .await
                .is_ok()
        );
        let e = admit("169.254.169.254", 80, false, &[]).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unavailable, "{e:?}");
        // `.invalid` never resolves (RFC 6761).
        let e = admit("no-such-host.invalid", 80, false, &[])
            .await
            .unwrap_err();
        assert_eq!(
            (e.kind, e.category),
            (ErrorKind::Transient, ErrorCategory::Connection)
        );
    }

    #[tokio::test]
    async fn admit_each_refuses_all_for_one_refused_server_and_skips_unresolvable_ones() {
        use crate::output::ErrorKind;
        let e = admit_each(&[("no-such-host.invalid", 1), ("localhost", 2)], true, &[])
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unavailable, "{e:?}");
        let servers = [
            ("no-such-host.invalid", 1),
            ("127.0.0.1", 2),
            ("localhost", 3),
        ];
        assert_eq!(admit_each(&servers, false, &[]).await.unwrap(), vec![1, 2]);
        let e = admit_each(&servers[..1], false, &[]).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Transient, "{e:?}");
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
