//! `webhook-relay` binary. Being written.

fn main() {
    eprintln!("webhook-relay: not built yet");
    std::process::exit(2);
}
