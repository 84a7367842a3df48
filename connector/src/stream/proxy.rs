//! HTTP(S) proxy support for the WebSocket transport: the proxy comes from `proxy` in the config
//! or from the standard environment variables, and the tunnel is an HTTP `CONNECT`. (SSE,
//! long-poll and acks use reqwest's own proxy support with the same settings.)

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Most bytes read of the proxy's answer to `CONNECT`.
const MAX_PROXY_RESPONSE: usize = 16 * 1024;

fn env_var(names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
}

/// True when `host` matches one of the `no_proxy` patterns (`*`, `example.com`, `.example.com`).
pub fn bypassed(host: &str, patterns: &[String]) -> bool {
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    patterns.iter().any(|p| {
        let p = p.trim().to_ascii_lowercase();
        let p = p.split(':').next().unwrap_or("").to_owned();
        if p.is_empty() {
            return false;
        }
        if p == "*" {
            return true;
        }
        let bare = p.trim_start_matches('.');
        host == bare || host.ends_with(&format!(".{bare}"))
    })
}

/// The proxy URL to use for a WebSocket to `host`, if any.
pub fn ws_proxy(
    configured: Option<&str>,
    no_proxy: &[String],
    secure: bool,
    host: &str,
) -> Option<String> {
    let (proxy, patterns) = match configured {
        Some(p) => (p.to_owned(), no_proxy.to_vec()),
        None => {
            let p = if secure {
                env_var(&["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"])
            } else {
                env_var(&["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"])
            }?;
            let patterns = env_var(&["NO_PROXY", "no_proxy"])
                .map(|v| v.split(',').map(str::to_owned).collect())
                .unwrap_or_default();
            (p, patterns)
        }
    };
    (!bypassed(host, &patterns)).then_some(proxy)
}

/// Opens a TCP tunnel to `host:port` through the HTTP proxy at `proxy` (`http://[user:pass@]h:p`).
pub async fn connect_tunnel(
    proxy: &str,
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<TcpStream, String> {
    let rest = proxy
        .strip_prefix("http://")
        .ok_or_else(|| "only http:// proxies can carry WebSocket connections".to_owned())?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let hostport = if hostport.contains(':') {
        hostport.to_owned()
    } else {
        format!("{hostport}:80")
    };
    let work = async {
        let mut stream = TcpStream::connect(&hostport)
            .await
            .map_err(|e| format!("cannot reach the proxy: {e}"))?;
        let mut request = format!("CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n");
        if let Some(u) = userinfo {
            request.push_str(&format!(
                "Proxy-Authorization: Basic {}\r\n",
                BASE64.encode(u.as_bytes())
            ));
        }
        request.push_str("\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("proxy write failed: {e}"))?;
        let mut buf = Vec::with_capacity(1024);
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            if buf.len() >= MAX_PROXY_RESPONSE {
                return Err("proxy answer too long".to_owned());
            }
            let n = stream
                .read(&mut byte)
                .await
                .map_err(|e| format!("proxy read failed: {e}"))?;
            if n == 0 {
                return Err("proxy closed the connection".to_owned());
            }
            buf.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&buf);
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok());
        match status {
            Some(200) => Ok(stream),
            Some(code) => Err(format!("proxy refused CONNECT with {code}")),
            None => Err("proxy sent an invalid answer".to_owned()),
        }
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| "proxy CONNECT timed out".to_owned())?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_proxy_patterns_match_hosts_and_subdomains() {
        let p = vec![
            "localhost".to_owned(),
            ".internal".to_owned(),
            "10.0.0.1".to_owned(),
        ];
        assert!(bypassed("localhost", &p));
        assert!(bypassed("relay.internal", &p));
        assert!(bypassed("10.0.0.1", &p));
        assert!(!bypassed("relay.example.com", &p));
        assert!(bypassed("anything", &["*".to_owned()]));
    }

    #[test]
    fn configured_proxy_is_used_unless_bypassed() {
        let np = vec!["127.0.0.1".to_owned()];
        assert_eq!(
            ws_proxy(Some("http://p:3128"), &np, false, "relay.example.com").as_deref(),
            Some("http://p:3128")
        );
        assert_eq!(
            ws_proxy(Some("http://p:3128"), &np, false, "127.0.0.1"),
            None
        );
    }
}
