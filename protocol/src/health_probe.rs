//! What the `health` subcommands of both programs share: the address they probe (their own
//! listener, reached on loopback: a listener bound to every interface, `0.0.0.0` or `::`, is
//! probed on `127.0.0.1` / `::1`; one bound to a named host or address there), the path, and
//! the verdict on the answer.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// `scheme://host:port` for a listen address such as `0.0.0.0:8000`, `[::]:9091`,
/// `127.0.0.1:8000` or `relay.internal:8000`.
pub fn loopback_url(scheme: &str, listen: &str) -> Result<String, String> {
    let listen = listen.trim();
    if let Ok(addr) = listen.parse::<SocketAddr>() {
        return Ok(format!("{scheme}://{}", loopback(addr)));
    }
    match listen.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
            Ok(format!("{scheme}://{host}:{port}"))
        }
        _ => Err(format!("expected host:port, got {listen:?}")),
    }
}

/// `addr` with an unspecified IP replaced by the loopback address of its family.
pub fn loopback(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), addr.port())
        }
        _ => addr,
    }
}

/// The URL probed: `base` without a trailing `/`, then `/readyz` or `/healthz`.
pub fn probe_url(base: &str, ready: bool) -> String {
    let path = if ready { "/readyz" } else { "/healthz" };
    format!("{}{path}", base.trim_end_matches('/'))
}

/// The verdict on one probe of `url`: `Ok` (the line for stdout, exit 0) when it answered a
/// 2xx status, else `Err` (the line for stderr, exit 1). `outcome` is the status and body, or
/// why no answer came.
pub fn verdict(url: &str, outcome: Result<(u16, String), String>) -> Result<String, String> {
    match outcome {
        Ok((status, body)) if (200..300).contains(&status) => {
            Ok(format!("{url}: {status} {}", body.trim()))
        }
        Ok((status, body)) => Err(format!("unhealthy: {url}: {status} {}", body.trim())),
        Err(why) => Err(format!("unhealthy: {url}: {why}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_interface_listeners_are_probed_on_loopback() {
        assert_eq!(
            loopback_url("http", "0.0.0.0:8000").unwrap(),
            "http://127.0.0.1:8000"
        );
        assert_eq!(
            loopback_url("https", "[::]:8443").unwrap(),
            "https://[::1]:8443"
        );
        assert_eq!(
            loopback_url("http", "10.1.2.3:9091").unwrap(),
            "http://10.1.2.3:9091"
        );
        assert_eq!(
            loopback_url("http", "relay.internal:8000").unwrap(),
            "http://relay.internal:8000"
        );
        assert!(loopback_url("http", "8000").is_err());
        assert!(loopback_url("http", "host:http").is_err());
    }

    #[test]
    fn only_a_success_status_is_healthy() {
        let url = probe_url("http://127.0.0.1:9091/", true);
        assert_eq!(url, "http://127.0.0.1:9091/readyz");
        assert_eq!(
            verdict(&url, Ok((200, "{\"ready\":true}\n".into()))),
            Ok("http://127.0.0.1:9091/readyz: 200 {\"ready\":true}".into())
        );
        assert!(verdict(&url, Ok((503, String::new()))).is_err());
        assert_eq!(
            verdict(&url, Err("connection refused".into())),
            Err("unhealthy: http://127.0.0.1:9091/readyz: connection refused".into())
        );
    }
}
