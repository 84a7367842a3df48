//! Outbound policy for local targets (`modules.md` §2.3), checked at load time: URL hygiene, cloud
//! metadata endpoints always refused, and with `strict` also loopback, private, link-local,
//! multicast and reserved addresses given literally (host names are not resolved at load).

use std::net::IpAddr;

const METADATA_HOSTS: &[&str] = &[
    "169.254.169.254",
    "metadata.google.internal",
    "100.100.100.200",
    "fd00:ec2::254",
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
    if METADATA_HOSTS.contains(&lower.as_str()) {
        return Some(format!(
            "{host} is a cloud metadata endpoint (refused by outbound_policy)"
        ));
    }
    if strict {
        let refused = match lower.parse::<IpAddr>() {
            Ok(ip) => non_public(ip),
            Err(_) => lower == "localhost" || lower.ends_with(".localhost"),
        };
        if refused {
            return Some(format!(
                "{host} is a loopback, private or reserved address (refused by outbound_policy \"strict\")"
            ));
        }
    }
    None
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
