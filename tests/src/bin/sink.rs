//! `webhook-connect-sink [ADDR]`: a local HTTP target that prints every request it receives and
//! answers `200`. The quickstart uses it as the "application behind the firewall".

use std::net::SocketAddr;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9090".into());
    let Ok(addr) = addr.parse::<SocketAddr>() else {
        eprintln!("usage: webhook-connect-sink [ADDR]   (e.g. 127.0.0.1:9090)");
        return std::process::ExitCode::from(2);
    };
    match webhook_connect_tests::sink::Sink::start(addr, true).await {
        Ok(sink) => {
            println!("sink listening on {}", sink.url());
            let _ = tokio::signal::ctrl_c().await;
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sink: cannot listen on {addr}: {e}");
            std::process::ExitCode::from(1)
        }
    }
}
