//! Outbound HTTP for verifiers (OAuth 2.0 introspection, reCAPTCHA): timeouts, no redirects,
//! and the SSRF policy of §7.1 enforced at DNS resolution time.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::client_ip::normalize;

/// Timeout of every verifier call.
pub(crate) const VERIFY_TIMEOUT: Duration = Duration::from_secs(5);

/// True for addresses an outbound verifier call must not reach unless allowed: loopback,
/// private, link-local (incl. the cloud metadata address 169.254.169.254), shared, unspecified,
/// multicast, broadcast, unique-local and documentation ranges.
pub fn is_restricted_ip(ip: IpAddr) -> bool {
    match normalize(ip) {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || o[0] >= 240
        }
        IpAddr::V6(v6) => {
            let seg = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg[0] & 0xfe00) == 0xfc00
                || (seg[0] & 0xffc0) == 0xfe80
                || (seg[0] == 0x2001 && seg[1] == 0x0db8)
                || (seg[0] == 0x64 && seg[1] == 0xff9b)
        }
    }
}

/// A resolver that drops restricted addresses for hosts not in `allowed_hosts`.
#[derive(Debug)]
struct PolicyResolver {
    allowed_hosts: Vec<String>,
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_ascii_lowercase();
        let allowed = self.allowed_hosts.contains(&host);
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::time::timeout(VERIFY_TIMEOUT, tokio::net::lookup_host((host.as_str(), 0)))
                    .await
                    .map_err(|_| "DNS resolution timed out")??
                    .filter(|a| allowed || !is_restricted_ip(a.ip()))
                    .collect();
            if addrs.is_empty() {
                return Err("host resolves only to restricted addresses".into());
            }
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// A client with the verifier timeout and no redirects. With `ssrf_allowed_hosts`, restricted
/// addresses are refused at resolution time except for the listed hosts, and proxy
/// environment variables are ignored.
pub(crate) fn build_client(
    ssrf_allowed_hosts: Option<&[String]>,
) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .timeout(VERIFY_TIMEOUT)
        .connect_timeout(VERIFY_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none());
    if let Some(allowed) = ssrf_allowed_hosts {
        // Through a proxy the target would be resolved by the proxy, out of the policy's
        // reach: such calls go direct.
        builder = builder.no_proxy().dns_resolver(Arc::new(PolicyResolver {
            allowed_hosts: allowed.iter().map(|h| h.to_ascii_lowercase()).collect(),
        }));
    }
    builder
        .build()
        .map_err(|e| format!("cannot build HTTP client: {e}"))
}

/// `application/x-www-form-urlencoded` body.
pub(crate) fn form_body(fields: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in fields {
        s.append_pair(k, v);
    }
    s.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restricted_addresses_are_recognised_r136() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_restricted_ip(ip.parse().expect("ip")), "{ip}");
        }
        for ip in ["8.8.8.8", "1.1.1.1", "2606:4700::1111"] {
            assert!(!is_restricted_ip(ip.parse().expect("ip")), "{ip}");
        }
    }
}
