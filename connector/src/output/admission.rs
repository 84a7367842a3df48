//! The outbound policy at connect time (`docs/reference/module-contract.md` §2.3): a module's server is admitted only
//! when every address its name resolves to is allowed.

use super::{ErrorCategory, ErrorKind, OutputError};
use crate::outbound;

/// The outbound policy at connect time (`docs/reference/module-contract.md` §2.3): resolves `host` and checks every
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
#[cfg_attr(not(any(feature = "nats", feature = "kafka")), allow(dead_code))] // only nats and kafka use it
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
            Err(e) if e.kind == ErrorKind::Unavailable => return Err(e),
            Err(e) => failed = Some(e),
        }
    }
    match failed {
        Some(e) if admitted.is_empty() => Err(e),
        _ => Ok(admitted),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `docs/reference/module-contract.md` §2.3 at connect time: a name is judged by the addresses it resolves to;
    /// a refusal needs an operator (`Unavailable`), a failed lookup is `Transient`.
    #[tokio::test]
    async fn admit_refuses_a_name_that_resolves_to_a_refused_address() {
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
}
