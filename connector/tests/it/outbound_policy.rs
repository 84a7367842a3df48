//! The outbound policy at connect time (`docs/reference/module-contract.md` §2.3) in the modules that open their own
//! TCP connections. Each resolves its host through `admission::admit` before connecting (unit
//! tests of that helper cover refusals: a name that resolves to a refused address, a refused
//! server among several). A refusal through a whole module cannot be driven here without a DNS
//! name the load check accepts but that resolves to a refused address, which a test cannot
//! rely on; what is tested here is the other half: a host *name* goes through the check and
//! the module still connects to the real server (the existing tests use address literals).

use serde_json::{Value, json};
use webhook_connector::output::{mqtt, nats, redis_publish};

use crate::sinks::{Build, Entry, require_server, unique};

/// Module, its builder, module-config, the connection entry naming the server `localhost`,
/// and the server's address for the reachability check.
fn cases() -> Vec<(&'static str, Build, Value, Value, &'static str)> {
    vec![
        (
            "redis_publish",
            redis_publish::build,
            json!({"channel": unique("wc_admit")}),
            json!({"type": "redis", "host": "localhost", "port": 6379}),
            "127.0.0.1:6379",
        ),
        (
            "nats",
            nats::build,
            json!({"subject": unique("wc.admit")}),
            json!({"type": "nats", "url": "nats://localhost:4222"}),
            "127.0.0.1:4222",
        ),
        (
            "mqtt",
            mqtt::build,
            json!({"topic": format!("wc/{}", unique("admit"))}),
            json!({"type": "mqtt", "host": "localhost", "port": 1883}),
            "127.0.0.1:1883",
        ),
    ]
}

#[tokio::test]
async fn tcp_modules_connect_to_a_host_name_through_the_connect_time_check() {
    for (module, build, config, connection, addr) in cases() {
        require_server(module, addr).await;
        let out = Entry::new(module, config)
            .connection("c", connection)
            .build(build);
        let connected = out.setup().await;
        out.teardown().await;
        assert!(connected.is_ok(), "{module}: {connected:?}");
    }
}
