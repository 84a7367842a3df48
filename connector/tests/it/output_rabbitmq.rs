//! `rabbitmq` against a real RabbitMQ (`TEST_RABBITMQ_URL`, default
//! `amqp://guest:guest@127.0.0.1:5672/%2f`): confirmed messages are consumed back with their
//! properties; a password with `@`, `/` and `%` and a vhost work; 50 messages use one
//! connection (R-101, counted with `rabbitmqctl`); and the error kinds hold.

use lapin::options::{BasicGetOptions, QueueDeleteOptions};
use lapin::types::AMQPValue;
use lapin::{Connection, ConnectionProperties};
use serde_json::{Value, json};
use webhook_connector::output::shared::SharedClients;
use webhook_connector::output::{ErrorCategory, ErrorKind, rabbitmq};

use crate::sinks::{
    Cleanup, Entry, closed_port, delivery, env_or, payload, require_server, unique,
};

fn url() -> String {
    env_or("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
}

fn host_port() -> (String, u16) {
    let u = url();
    let hostport = u
        .split('@')
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or("127.0.0.1:5672")
        .to_owned();
    let (host, port) = hostport.split_once(':').unwrap_or((&hostport, "5672"));
    (host.to_owned(), port.parse().unwrap_or(5672))
}

fn guest() -> Value {
    let (host, port) = host_port();
    json!({"type": "rabbitmq", "host": host, "port": port})
}

/// Connects to `url` (the test's own client, to read back and clean up).
async fn consumer(url: &str) -> lapin::Channel {
    let (host, port) = host_port();
    require_server("TEST_RABBITMQ_URL", &format!("{host}:{port}")).await;
    let conn = Connection::connect(url, ConnectionProperties::default())
        .await
        .expect("connect to TEST_RABBITMQ_URL");
    conn.create_channel().await.unwrap()
}

fn delete_queue(url: String, queue: String) -> Cleanup {
    Cleanup::new(move || async move {
        if let Ok(conn) = Connection::connect(&url, ConnectionProperties::default()).await
            && let Ok(ch) = conn.create_channel().await
        {
            let _ = ch.queue_delete(&queue, QueueDeleteOptions::default()).await;
        }
    })
}

fn rabbitmqctl(args: &[&str]) -> String {
    let out = std::process::Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl is needed for the user and connection-count tests");
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn a_confirmed_message_is_consumed_back_with_its_properties() {
    let ch = consumer(&url()).await;
    let queue = unique("wc_q");
    let _cleanup = delete_queue(url(), queue.clone());
    let entry = Entry::new("rabbitmq", json!({"queue_name": queue})).connection("mq", guest());
    let out = entry.build(rabbitmq::build);
    out.setup().await.unwrap();
    out.process(&delivery("msg_amqp", payload(1)))
        .await
        .unwrap();
    let got = ch
        .basic_get(&queue, BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("one message in the queue");
    assert_eq!(
        serde_json::from_slice::<Value>(&got.delivery.data).unwrap(),
        payload(1)
    );
    let props = &got.delivery.properties;
    assert_eq!(
        props.message_id().as_ref().map(|s| s.as_str()),
        Some("msg_amqp")
    );
    assert_eq!(
        props.content_type().as_ref().map(|s| s.as_str()),
        Some("application/json")
    );
    assert_eq!(*props.delivery_mode(), Some(2));
    let headers = props.headers().as_ref().unwrap();
    assert!(matches!(
        headers.inner().get("x-event"),
        Some(AMQPValue::LongString(v)) if v.to_string() == "order.created"
    ));
    out.teardown().await;
}

/// A vhost and user of one test, deleted on drop.
struct Account {
    user: String,
    password: String,
    vhost: String,
}

impl Account {
    fn create() -> Self {
        let a = Account {
            user: unique("wc_u"),
            password: "p@ss/w%rd".to_owned(),
            vhost: unique("wc/vh"),
        };
        rabbitmqctl(&["add_vhost", &a.vhost]);
        rabbitmqctl(&["add_user", &a.user, &a.password]);
        rabbitmqctl(&["set_permissions", "-p", &a.vhost, &a.user, ".*", ".*", ".*"]);
        a
    }

    fn connection(&self, password: &str) -> Value {
        let (host, port) = host_port();
        json!({"type": "rabbitmq", "host": host, "port": port.to_string(),
               "user": self.user, "pass": password, "vhost": self.vhost})
    }

    fn connections(&self) -> usize {
        rabbitmqctl(&["list_connections", "-q", "--no-table-headers", "user"])
            .lines()
            .filter(|l| l.trim() == self.user)
            .count()
    }
}

impl Drop for Account {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rabbitmqctl")
            .args(["delete_user", &self.user])
            .output();
        let _ = std::process::Command::new("rabbitmqctl")
            .args(["delete_vhost", &self.vhost])
            .output();
    }
}

/// a password with `@`, `/` and `%`, a vhost with `/`; two instances and 50
/// messages over one connection.
#[tokio::test]
async fn encoded_credentials_and_vhost_and_one_connection_for_fifty_messages() {
    let _ = consumer(&url()).await;
    let account = Account::create();
    let queue = unique("wc_q");
    let shared = SharedClients::new();
    let entries = [0, 1].map(|_| {
        Entry::new("rabbitmq", json!({"queue_name": queue}))
            .connection("mq", account.connection(&account.password))
            .shared(&shared)
    });
    let outs = entries.each_ref().map(|e| e.build(rabbitmq::build));
    for o in &outs {
        o.setup().await.unwrap();
    }
    for i in 0..50u64 {
        outs[(i % 2) as usize]
            .process(&delivery(&format!("m{i}"), payload(i)))
            .await
            .unwrap();
    }
    assert_eq!(
        account.connections(),
        1,
        "one AMQP connection for 50 messages"
    );
    let vhost_url = format!(
        "amqp://{}:{}@{}:{}/{}",
        account.user,
        "p%40ss%2Fw%25rd",
        host_port().0,
        host_port().1,
        account.vhost.replace('/', "%2F")
    );
    let ch = consumer(&vhost_url).await;
    let mut count = 0;
    while ch
        .basic_get(&queue, BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .is_some()
    {
        count += 1;
    }
    assert_eq!(count, 50);
}

#[tokio::test]
async fn a_wrong_password_is_unavailable_auth() {
    let _ = consumer(&url()).await;
    let account = Account::create();
    let entry = Entry::new("rabbitmq", json!({"queue_name": unique("q")}))
        .connection("mq", account.connection("wrong"));
    let err = entry.build(rabbitmq::build).setup().await.unwrap_err();
    assert_eq!(
        (err.kind, err.category),
        (ErrorKind::Unavailable, ErrorCategory::Auth),
        "{err}"
    );
    assert!(!err.message.contains("wrong"), "{err}");
}

#[tokio::test]
async fn a_missing_queue_without_declare_and_an_unroutable_message_are_unavailable() {
    let _ = consumer(&url()).await;
    let missing = Entry::new(
        "rabbitmq",
        json!({"queue_name": unique("absent"), "declare_queue": false}),
    )
    .connection("mq", guest());
    let err = missing.build(rabbitmq::build).setup().await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unavailable, "{err}");
    let unroutable = Entry::new(
        "rabbitmq",
        json!({"queue_name": unique("nobody"), "declare_queue": false, "exchange": "amq.direct"}),
    )
    .connection("mq", guest());
    let err = unroutable
        .build(rabbitmq::build)
        .process(&delivery("m", payload(0)))
        .await
        .unwrap_err();
    assert_eq!(
        (err.kind, err.category),
        (ErrorKind::Unavailable, ErrorCategory::ClientError),
        "{err}"
    );
}

/// A queue that exists with other arguments refuses the configuration: `Permanent` at setup.
#[tokio::test]
async fn a_queue_declared_with_other_arguments_fails_setup_permanently() {
    let ch = consumer(&url()).await;
    let queue = unique("wc_q");
    let _cleanup = delete_queue(url(), queue.clone());
    ch.queue_declare(
        &queue,
        lapin::options::QueueDeclareOptions {
            durable: false,
            ..Default::default()
        },
        Default::default(),
    )
    .await
    .unwrap();
    let entry = Entry::new("rabbitmq", json!({"queue_name": queue})).connection("mq", guest());
    let err = entry.build(rabbitmq::build).setup().await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Permanent, "{err}");
}

#[tokio::test]
async fn a_closed_port_is_transient_connection() {
    let port = closed_port().await;
    let entry = Entry::new("rabbitmq", json!({"queue_name": "q"})).connection(
        "mq",
        json!({"type": "rabbitmq", "host": "127.0.0.1", "port": port}),
    );
    let err = entry.build(rabbitmq::build).setup().await.unwrap_err();
    assert_eq!(
        (err.kind, err.category),
        (ErrorKind::Transient, ErrorCategory::Connection),
        "{err}"
    );
}

#[test]
fn a_connection_and_a_valid_queue_name_are_required() {
    let no_conn = Entry::new("rabbitmq", json!({"queue_name": "q"}));
    assert!(no_conn.refused(rabbitmq::build).errors[0].contains("requires a connection"));
    let reserved = Entry::new("rabbitmq", json!({"queue_name": "amq.x"})).connection("mq", guest());
    reserved.refused(rabbitmq::build);
    let legacy = Entry::new("rabbitmq", json!({}))
        .connection("mq", guest())
        .webhook(json!({"module": "rabbitmq", "queue_name": "legacy_q"}));
    legacy.build(rabbitmq::build);
}
