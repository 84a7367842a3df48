//! Outbound policy for local targets (`docs/reference/module-contract.md` §2.3). At load time: URL hygiene, cloud
//! metadata endpoints always refused, and with `strict` also loopback, private, link-local,
//! multicast and reserved addresses given literally. At connect time: host names are resolved
//! and every address they resolve to is checked the same way ([`resolve`], and
//! [`PolicyResolver`] for the HTTP clients, which resolves on each new connection), so a name
//! that points at a refused address — a record changed after load, or a name of the local
//! machine — is refused too. Numeric hosts (`127.1`) are judged by the address they stand for. Hosts listed in a module's `allowed_hosts` are exempt.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

const METADATA_HOSTS: &[&str] = &[
    "169.254.169.254",
    "metadata.google.internal",
    "100.100.100.200",
    "fd00:ec2::254",
];

/// The metadata endpoints' addresses, refused whatever name leads to them.
const METADATA_ADDRESSES: [IpAddr; 3] = [
    IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)),
    IpAddr::V4(Ipv4Addr::new(100, 100, 100, 200)),
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)),
];

/// Longest target URL accepted.
pub const MAX_URL_LEN: usize = 8192;

fn host_of(url: &str) -> Option<(&str, bool)> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let has_userinfo = authority.contains('@');
    let hostport = authority.rsplit('@').next()?;
    let host = if let Some(v6) = hostport.strip_prefix('[') {
        v6.split(']').next()?
    } else {
        hostport.split(':').next()?
    };
    Some((host, has_userinfo))
}

fn non_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_unspecified()
                || v4.is_documentation()
                || o[0] == 0
                || o[0] >= 240
                || (o[0] == 100 && (64..128).contains(&o[1]))
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|v4| non_public(IpAddr::V4(v4)))
        }
    }
}

/// Why `url` is refused, if it is.
pub fn check(url: &str, strict: bool) -> Option<String> {
    check_allowing(url, strict, &[])
}

/// Like [`check`], with the hosts of a module's `allowed_hosts` exempt from the address rules
/// (never from the URL hygiene rules). Hosts compare case-insensitively.
pub fn check_allowing(url: &str, strict: bool, allowed_hosts: &[String]) -> Option<String> {
    if url.len() > MAX_URL_LEN {
        return Some(format!("longer than {MAX_URL_LEN} characters"));
    }
    if url.contains('\0') {
        return Some("contains NUL".into());
    }
    let Some((host, userinfo)) = host_of(url) else {
        return Some("has no host".into());
    };
    if userinfo {
        return Some("must not contain user-info (user:password@)".into());
    }
    if host.is_empty() {
        return Some("has no host".into());
    }
    let lower = host.to_ascii_lowercase();
    if allowed_hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
        return None;
    }
    // HTTP clients read `127.1`, `2130706433` or `0x7f.1` as 127.0.0.1 (the WHATWG URL rules),
    // so numeric hosts are judged by the address they stand for; names by their text.
    let name = lower.trim_end_matches('.');
    let literal = lower.parse::<IpAddr>().ok().or_else(|| numeric_host(host));
    let (metadata, local) = match literal {
        Some(ip) => (refused_address(ip, false), refused_address(ip, true)),
        None => (
            METADATA_HOSTS.contains(&name),
            name == "localhost" || name.ends_with(".localhost"),
        ),
    };
    if metadata {
        return Some(format!(
            "{host} is a cloud metadata endpoint (refused by outbound_policy)"
        ));
    }
    if strict && local {
        return Some(format!(
            "{host} is a loopback, private or reserved address (refused by outbound_policy \"strict\")"
        ));
    }
    None
}

/// The address a numeric host such as `127.1` stands for in an `http://` URL, if it is one.
fn numeric_host(host: &str) -> Option<IpAddr> {
    let bracketed = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    let url = reqwest::Url::parse(&format!("http://{bracketed}/")).ok()?;
    url.host_str()?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// True when a connection to `ip` is refused: a metadata endpoint always, and under `strict`
/// every loopback, private, link-local, multicast or reserved address.
pub fn refused_address(ip: IpAddr, strict: bool) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    METADATA_ADDRESSES.contains(&ip) || (strict && non_public(ip))
}

/// A connection the outbound policy refused at connect time.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{host} resolves to {address}, refused by outbound_policy{}", if *.strict { " \"strict\"" } else { "" })]
pub struct Refused {
    /// The host name as configured.
    pub host: String,
    /// The refused address it resolved to.
    pub address: IpAddr,
    /// Under `strict`.
    pub strict: bool,
}

/// Resolves `host` for a connection to `port` and checks every address it resolves to: one
/// refused address refuses the host (a resolver may rotate its answers). Hosts in `allowed` are
/// resolved without the check.
pub async fn resolve(
    host: &str,
    port: u16,
    strict: bool,
    allowed: &[String],
) -> std::io::Result<Vec<SocketAddr>> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((bare, port)).await?.collect();
    if !allowed.iter().any(|h| h.eq_ignore_ascii_case(host))
        && let Some(bad) = addrs.iter().find(|a| refused_address(a.ip(), strict))
    {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            Refused {
                host: host.to_owned(),
                address: bad.ip(),
                strict,
            },
        ));
    }
    Ok(addrs)
}

/// The policy refusal somewhere in the source chain of `e`, if that is why it failed.
pub fn refusal_in<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refused> {
    let mut source = Some(e);
    while let Some(err) = source {
        if let Some(r) = err.downcast_ref::<Refused>() {
            return Some(r);
        }
        // An I/O error's `source` skips the error it wraps.
        if let Some(r) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<Refused>())
        {
            return Some(r);
        }
        source = err.source();
    }
    None
}

/// A DNS resolver for `reqwest` clients that applies [`resolve`] on every new connection.
#[derive(Debug, Clone)]
pub struct PolicyResolver {
    strict: bool,
    allowed: Arc<[String]>,
}

impl PolicyResolver {
    /// A resolver for `strict` (or permissive) policy, exempting `allowed` hosts.
    pub fn new(strict: bool, allowed: &[String]) -> Arc<Self> {
        Arc::new(PolicyResolver {
            strict,
            allowed: allowed.into(),
        })
    }
}

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let this = self.clone();
        Box::pin(async move {
            let addrs = resolve(name.as_str(), 0, this.strict, &this.allowed).await?;
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissive_allows_local_targets_but_never_metadata_endpoints() {
        assert_eq!(check("http://127.0.0.1:3000/hook", false), None);
        assert_eq!(check("http://10.0.0.5/hook", false), None);
        assert!(check("http://169.254.169.254/latest", false).is_some());
        assert!(check("http://[fd00:ec2::254]/x", false).is_some());
        assert!(check("http://Metadata.Google.Internal/x", false).is_some());
        assert!(check("http://user:pw@127.0.0.1/x", false).is_some());
    }

    #[test]
    fn allowed_hosts_exempt_only_the_address_rules() {
        let allowed = vec!["169.254.169.254".to_owned(), "LOCALHOST".to_owned()];
        assert_eq!(
            check_allowing("http://169.254.169.254/x", false, &allowed),
            None
        );
        assert_eq!(check_allowing("http://localhost:1/x", true, &allowed), None);
        assert!(check_allowing("http://u:p@localhost/x", true, &allowed).is_some());
        assert!(check_allowing("http://10.0.0.1/x", true, &allowed).is_some());
    }

    #[test]
    fn resolved_addresses_are_refused_by_policy() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(refused_address(ip("169.254.169.254"), false));
        assert!(refused_address(ip("::ffff:169.254.169.254"), false));
        assert!(refused_address(ip("fd00:ec2::254"), false));
        assert!(!refused_address(ip("127.0.0.1"), false));
        assert!(refused_address(ip("127.0.0.1"), true));
        assert!(refused_address(ip("::ffff:10.1.2.3"), true));
        assert!(!refused_address(ip("93.184.216.34"), true));
    }

    #[test]
    fn numeric_hosts_are_judged_by_the_address_they_stand_for() {
        for host in [
            "127.1",
            "0x7f.1",
            "2130706433",
            "[::ffff:127.0.0.1]",
            "localhost.",
        ] {
            let url = format!("http://{host}:80/x");
            assert!(check(&url, true).is_some(), "{host}");
            assert!(check(&url, false).is_none(), "{host}");
        }
        // 169.254.169.254 written as one number is still the metadata endpoint.
        assert!(check("http://2852039166/latest", false).is_some());
    }

    #[tokio::test]
    async fn a_name_is_refused_by_the_addresses_it_resolves_to() {
        let err = resolve("localhost", 80, true, &[]).await.unwrap_err();
        let refused = refusal_in(&err).expect("a policy refusal");
        assert!(refused.address.is_loopback(), "{refused}");
        assert!(resolve("localhost", 80, false, &[]).await.is_ok());
        assert!(
            resolve("LOCALHOST", 80, true, &["localhost".into()])
                .await
                .is_ok()
        );
    }

    /// The resolver refuses inside a real HTTP client, and the refusal can be told apart from
    /// other connection errors.
    #[tokio::test]
    async fn http_clients_resolve_through_the_policy() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                    .await;
            }
        });
        let url = format!("http://localhost:{port}/");
        let client = |strict| {
            reqwest::Client::builder()
                .dns_resolver(PolicyResolver::new(strict, &[]))
                .build()
                .unwrap()
        };
        let err = client(true).get(&url).send().await.unwrap_err();
        assert!(refusal_in(&err).is_some(), "{err:?}");
        let ok = client(false).get(&url).send().await.unwrap();
        assert_eq!(ok.status(), 204);
    }

    #[test]
    fn strict_refuses_literal_non_public_addresses() {
        for url in [
            "http://127.0.0.1/x",
            "http://localhost:3000/x",
            "http://192.168.1.2/x",
            "http://[::1]/x",
            "http://[fe80::1]/x",
            "http://100.64.0.1/x",
        ] {
            assert!(check(url, true).is_some(), "{url}");
        }
        assert_eq!(check("https://hooks.example.com/x", true), None);
        assert_eq!(check("http://93.184.216.34/x", true), None);
    }
}
