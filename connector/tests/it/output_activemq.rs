//! `activemq` (STOMP) against RabbitMQ's `rabbitmq_stomp` plugin (`TEST_STOMP_ADDR`, default
//! `127.0.0.1:61613`): a message sent with a receipt is consumed back over AMQP from the queue
//! the destination names; a port given as a numeric string works; a refused login is
//! `Unavailable`; two instances share one connection.

use lapin::options::{BasicGetOptions, QueueDeleteOptions};
use lapin::{Connection, ConnectionProperties};
use serde_json::{Value, json};
use webhook_connector::output::shared::SharedClients;
use webhook_connector::output::{ErrorCategory, ErrorKind, activemq};

use crate::sinks::{
    Cleanup, Entry, closed_port, delivery, env_or, payload, require_server, unique,
};

fn addr() -> (String, String) {
    let a = env_or("TEST_STOMP_ADDR", "127.0.0.1:61613");
    let (h, p) = a.split_once(':').unwrap_or((&a, "61613"));
    (h.to_owned(), p.to_owned())
}

fn amqp_url() -> String {
    env_or("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
}

fn connection(password: &str) -> Value {
    let (host, port) = addr();
    // The port as a numeric string, as configuration substitution produces it.
    json!({"type": "activemq", "host": host, "port": port, "user": "guest", "password": password})
}

async fn channel() -> lapin::Channel {
    let (host, port) = addr();
    require_server("TEST_STOMP_ADDR", &format!("{host}:{port}")).await;
    let conn = Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .unwrap();
    conn.create_channel().await.unwrap()
}

fn delete_queue(queue: String) -> Cleanup {
    Cleanup::new(move || async move {
        if let Ok(conn) = Connection::connect(&amqp_url(), ConnectionProperties::default()).await
            && let Ok(ch) = conn.create_channel().await
        {
            let _ = ch.queue_delete(&queue, QueueDeleteOptions::default()).await;
        }
    })
}

#[tokio::test]
async fn a_receipted_send_is_consumed_back_from_the_queue() {
    let ch = channel().await;
    let queue = unique("wc_stomp");
    let _cleanup = delete_queue(queue.clone());
    let shared = SharedClients::new();
    let entries = [0, 1].map(|_| {
        Entry::new("activemq", json!({"destination": queue}))
            .connection("broker", connection("guest"))
            .shared(&shared)
    });
    let outs = entries.each_ref().map(|e| e.build(activemq::build));
    for o in &outs {
        o.setup().await.unwrap();
    }
    for i in 0..10u64 {
        outs[(i % 2) as usize]
            .process(&delivery(&format!("m{i}"), payload(i)))
            .await
            .unwrap();
    }
    assert_eq!(
        shared.live().await,
        1,
        "one shared client for both instances"
    );
    let got = ch
        .basic_get(&queue, BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("the message is in the queue after its receipt");
    assert_eq!(
        serde_json::from_slice::<Value>(&got.delivery.data).unwrap(),
        payload(0)
    );
    let headers = format!("{:?}", got.delivery.properties.headers());
    assert!(headers.contains("webhook-message-id"), "{headers}");
    let mut rest = 0;
    while ch
        .basic_get(&queue, BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .is_some()
    {
        rest += 1;
    }
    assert_eq!(rest, 9);
}

#[tokio::test]
async fn a_refused_login_is_unavailable_auth() {
    let _ = channel().await;
    let entry = Entry::new("activemq", json!({"destination": "q"}))
        .connection("broker", connection("wrong"));
    let err = entry.build(activemq::build).setup().await.unwrap_err();
    assert_eq!(
        (err.kind, err.category),
        (ErrorKind::Unavailable, ErrorCategory::Auth),
        "{err}"
    );
    assert!(!err.message.contains("wrong"), "{err}");
}

#[tokio::test]
async fn a_closed_port_is_transient_connection() {
    let port = closed_port().await;
    let entry = Entry::new("activemq", json!({"destination": "q"})).connection(
        "broker",
        json!({"type": "activemq", "host": "10.0.0.1", "port": "1"}),
    );
    entry.build(activemq::build); // a private host is accepted under the permissive policy
    let entry = Entry::new("activemq", json!({"destination": "q"})).connection(
        "broker",
        json!({"type": "activemq", "host": "127.0.0.1", "port": port}),
    );
    let err = entry.build(activemq::build).setup().await.unwrap_err();
    assert_eq!(
        (err.kind, err.category),
        (ErrorKind::Transient, ErrorCategory::Connection),
        "{err}"
    );
}

#[test]
fn bad_destinations_are_load_errors() {
    for d in ["", "a/b", "a b"] {
        let entry = Entry::new("activemq", json!({"destination": d}))
            .connection("broker", connection("guest"));
        assert!(entry.refused(activemq::build).errors[0].contains("module-config.destination"));
    }
}
