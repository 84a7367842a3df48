//! Opening a listening socket with the configured accept queue (`server.listen_backlog`).
//!
//! `tokio::net::TcpListener::bind` asks the kernel for a queue of 1,024 connections. Under a
//! connection flood that queue fills, the kernel drops new SYNs, and a legitimate sender waits
//! for its SYN to be retransmitted (one second, then three): a longer queue absorbs the burst
//! while the accept loop admits and evicts. The kernel caps it at `net.core.somaxconn`.

use std::io;

use tokio::net::{TcpListener, TcpSocket, lookup_host};

/// Binds `addr` (`host:port`, the first address it resolves to) with SO_REUSEADDR and a
/// listen queue of `backlog` connections.
pub async fn bind(addr: &str, backlog: u32) -> io::Result<TcpListener> {
    let mut last_error = None;
    for resolved in lookup_host(addr).await? {
        let socket = if resolved.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        #[cfg(unix)]
        socket.set_reuseaddr(true)?;
        match socket.bind(resolved) {
            Ok(()) => return socket.listen(backlog),
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{addr} resolves to no address"),
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn binds_a_free_port_and_accepts_a_connection() {
        let listener = bind("127.0.0.1:0", 4096).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::net::TcpStream::connect(addr);
        let (accepted, connected) = tokio::join!(listener.accept(), client);
        assert!(connected.is_ok());
        assert_eq!(accepted.unwrap().1.ip(), addr.ip());
    }

    #[tokio::test]
    async fn an_address_in_use_is_an_error_not_a_second_listener() {
        let first = bind("127.0.0.1:0", 16).await.unwrap();
        let addr = first.local_addr().unwrap().to_string();
        assert_eq!(
            bind(&addr, 16).await.unwrap_err().kind(),
            io::ErrorKind::AddrInUse
        );
    }
}
