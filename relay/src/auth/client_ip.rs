//! IP networks, trusted proxies and the client IP (`docs/reference/auth-methods.md` §4, R-09, R-127).

use std::fmt;
use std::net::IpAddr;

use http::HeaderMap;

/// An IPv4 or IPv6 network (`10.0.0.0/24`, `2001:db8::/32`, or a single address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNetwork {
    addr: IpAddr,
    prefix: u8,
}

impl IpNetwork {
    /// Parses an address or a CIDR block. Host bits set in a CIDR block are ignored.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (addr_text, prefix_text) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr_text
            .parse()
            .map_err(|_| format!("invalid IP address or CIDR block: {text:?}"))?;
        let addr = normalize(addr);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix_text {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max && !p.starts_with('+') && !p.is_empty() => n,
                _ => return Err(format!("invalid IP address or CIDR block: {text:?}")),
            },
        };
        Ok(IpNetwork { addr, prefix })
    }

    /// True when `ip` lies in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, normalize(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                (u32::from(net) & mask) == (u32::from(ip) & mask)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                (u128::from(net) & mask) == (u128::from(ip) & mask)
            }
            _ => false,
        }
    }
}

impl fmt::Display for IpNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Normalises IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`) to IPv4.
pub fn normalize(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// A list of networks, used for allow-lists and trusted proxies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpList(Vec<IpNetwork>);

impl IpList {
    /// Parses every entry; the error names the first invalid one.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        entries
            .iter()
            .map(|e| IpNetwork::parse(e))
            .collect::<Result<Vec<_>, _>>()
            .map(IpList)
    }

    /// True when `ip` lies in any network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(ip))
    }

    /// True when the list is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// This list followed by `other`.
    pub fn merged(&self, other: &IpList) -> IpList {
        IpList(self.0.iter().chain(other.0.iter()).copied().collect())
    }
}

/// Reverse proxies whose forwarding headers are trusted (`server.trusted_proxies` plus a
/// webhook's `trusted_proxies`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(IpList);

impl TrustedProxies {
    /// Parses IP addresses and CIDR blocks; an invalid entry is an error naming it.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        IpList::parse(entries).map(TrustedProxies)
    }

    /// True when `ip` is a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(ip)
    }

    /// These proxies plus `other`.
    pub fn merged(&self, other: &TrustedProxies) -> TrustedProxies {
        TrustedProxies(self.0.merged(&other.0))
    }

    /// True when no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The client IP, or `None` when it cannot be determined (an invalid `X-Forwarded-For` entry
/// behind a trusted proxy; answered `403 Could not determine client IP` by the allow-list).
///
/// Procedure of `docs/reference/auth-methods.md` §4: the peer unless it is a trusted proxy; otherwise the
/// `X-Forwarded-For` entries read right to left, skipping trusted proxies; if all are trusted or
/// the header is absent, a valid `X-Real-IP`, else the peer.
pub fn try_client_ip(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: &TrustedProxies,
) -> Option<IpAddr> {
    let peer = normalize(peer);
    if !trusted.contains(peer) {
        return Some(peer);
    }
    let mut entries: Vec<&str> = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let Ok(text) = value.to_str() else {
            return None;
        };
        entries.extend(text.split(',').map(str::trim).filter(|e| !e.is_empty()));
    }
    for entry in entries.iter().rev() {
        let ip = normalize(parse_forwarded_ip(entry)?);
        if !trusted.contains(ip) {
            return Some(ip);
        }
    }
    if let Some(real) = headers
        .get("x-real-ip")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<IpAddr>().ok())
    {
        return Some(normalize(real));
    }
    Some(peer)
}

/// The client IP (§4). When it cannot be determined, the peer address is returned; use
/// [`try_client_ip`] where that case must be told apart (the allow-list).
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &TrustedProxies) -> IpAddr {
    try_client_ip(peer, headers, trusted).unwrap_or_else(|| normalize(peer))
}

/// An `X-Forwarded-For` entry: a bare address, or `[v6]` / `[v6]:port` / `v4:port` as some
/// proxies write them.
fn parse_forwarded_ip(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = entry.strip_prefix('[') {
        let (inner, _) = rest.split_once(']')?;
        return inner.parse().ok();
    }
    if let Some((host, port)) = entry.rsplit_once(':')
        && !host.contains(':')
        && port.bytes().all(|b| b.is_ascii_digit())
    {
        return host.parse().ok();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|_| panic!("bad ip {s}"))
    }

    fn proxies(list: &[&str]) -> TrustedProxies {
        let v: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        TrustedProxies::parse(&v).expect("valid proxies")
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                v.parse().expect("value"),
            );
        }
        h
    }

    #[test]
    fn cidr_block_admits_addresses_inside_r09() {
        let n = IpNetwork::parse("10.0.0.0/24").expect("cidr");
        assert!(n.contains(ip("10.0.0.7")));
        assert!(!n.contains(ip("10.0.1.7")));
        let n6 = IpNetwork::parse("2001:db8::/32").expect("cidr6");
        assert!(n6.contains(ip("2001:db8:1::5")));
        assert!(!n6.contains(ip("2001:db9::5")));
        let all = IpNetwork::parse("0.0.0.0/0").expect("all");
        assert!(all.contains(ip("8.8.8.8")));
        assert!(IpNetwork::parse("10.0.0.0/33").is_err());
        assert!(IpNetwork::parse("10.0.0/24").is_err());
        assert!(IpNetwork::parse("nonsense").is_err());
    }

    #[test]
    fn ipv4_mapped_peer_matches_ipv4_network() {
        let n = IpNetwork::parse("203.0.113.0/24").expect("cidr");
        assert!(n.contains(ip("::ffff:203.0.113.9")));
    }

    #[test]
    fn untrusted_peer_ignores_forwarding_headers_r127() {
        let h = headers(&[("x-forwarded-for", "1.1.1.1"), ("x-real-ip", "2.2.2.2")]);
        assert_eq!(client_ip(ip("9.9.9.9"), &h, &proxies(&[])), ip("9.9.9.9"));
    }

    #[test]
    fn trusted_proxy_uses_rightmost_untrusted_forwarded_entry_r127() {
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6, 5.5.5.5"),
            ("x-forwarded-for", "10.0.0.2"),
        ]);
        let t = proxies(&["10.0.0.0/8"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &t), ip("5.5.5.5"));
    }

    #[test]
    fn all_trusted_entries_fall_back_to_real_ip_then_peer() {
        let t = proxies(&["10.0.0.0/8"]);
        let h = headers(&[("x-forwarded-for", "10.1.1.1"), ("x-real-ip", "7.7.7.7")]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &t), ip("7.7.7.7"));
        let h = headers(&[("x-real-ip", "garbage")]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &t), ip("10.0.0.1"));
    }

    #[test]
    fn invalid_forwarded_entry_makes_client_undeterminable() {
        let t = proxies(&["10.0.0.0/8"]);
        let h = headers(&[("x-forwarded-for", "5.5.5.5, not-an-ip")]);
        assert_eq!(try_client_ip(ip("10.0.0.1"), &h, &t), None);
    }

    #[test]
    fn client_ip_is_rightmost_untrusted_entry_property_r127() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let t = proxies(&["10.0.0.0/8"]);
        for _ in 0..5000 {
            let n = rng.random_range(0..6);
            let entries: Vec<String> = (0..n)
                .map(|_| {
                    if rng.random_bool(0.5) {
                        format!("10.0.0.{}", rng.random_range(0..255))
                    } else {
                        format!("203.0.113.{}", rng.random_range(0..255))
                    }
                })
                .collect();
            let joined = entries.join(", ");
            let mut h = HeaderMap::new();
            if !entries.is_empty() {
                h.insert("x-forwarded-for", joined.parse().expect("value"));
            }
            let peer_trusted = rng.random_bool(0.7);
            let peer = if peer_trusted {
                ip("10.9.9.9")
            } else {
                ip("198.51.100.1")
            };
            let got = client_ip(peer, &h, &t);
            let expected = if !peer_trusted {
                peer
            } else {
                entries
                    .iter()
                    .rev()
                    .map(|e| ip(e))
                    .find(|e| !t.contains(*e))
                    .unwrap_or(peer)
            };
            assert_eq!(got, expected, "peer {peer}, xff {joined:?}");
        }
    }
}
