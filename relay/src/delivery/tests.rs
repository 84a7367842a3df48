//! The hub and settle path against a real embedded buffer: leases taken from the store, with
//! what a skewed buffer clock or a duplicate copy would hand the relay.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use webhook_connect_buffer::{EmbeddedBuffer, EmbeddedOptions, Lease, Settle, SharedBuffer};
use webhook_connect_protocol::{
    ConnectionKind, DataType, Envelope, Headers, MessageId, ProtocolVersion, Timestamp,
};

use super::{Conn, ConnInfo, Hub, HubOptions, SettleOutcome};
use crate::config::settings::ChannelSettings;

const CHANNEL: &str = "orders";

struct Fixture {
    hub: Arc<Hub>,
    buffer: SharedBuffer,
    tracker: TaskTracker,
    dir: std::path::PathBuf,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn fixture() -> Fixture {
    let dir = std::env::temp_dir().join(format!(
        "wc-relay-hub-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let buffer: SharedBuffer = Arc::new(
        EmbeddedBuffer::open(dir.join("buffer.db"), EmbeddedOptions::default())
            .await
            .expect("embedded buffer"),
    );
    let settings = ChannelSettings::default();
    buffer
        .ensure_channel(CHANNEL, &["shop".to_owned()], &settings.queue_settings())
        .await
        .expect("channel");
    let tracker = TaskTracker::new();
    let hub = Hub::new(
        CHANNEL.to_owned(),
        buffer.clone(),
        settings,
        HubOptions::default(),
        CancellationToken::new(),
        tracker.clone(),
    );
    // Leases are taken by the tests, not by the dispatcher.
    hub.set_paused(true);
    Fixture {
        hub,
        buffer,
        tracker,
        dir,
    }
}

fn envelope(n: u64) -> Envelope {
    let now = Timestamp::now();
    let body = format!("{{\"n\":{n}}}");
    Envelope {
        message_id: MessageId::generate(),
        channel: CHANNEL.to_owned(),
        webhook_id: "shop".to_owned(),
        namespace: None,
        sequence: 0,
        received_at: now,
        expires_at: None,
        headers: Headers::new(),
        raw_headers: None,
        data_type: DataType::Json,
        content_type: Some("application/json".into()),
        payload: serde_json::value::RawValue::from_string(body.clone()).expect("json"),
        payload_encoding: None,
        body_omitted: false,
        body: body.into_bytes(),
    }
}

impl Fixture {
    async fn lease_one(&self, n: u64) -> Lease {
        let mut e = envelope(n);
        self.buffer.publish("shop", &mut e).await.expect("publish");
        let mut leases = self
            .buffer
            .lease(CHANNEL, 1, Duration::from_secs(1), "test")
            .await
            .expect("lease");
        assert_eq!(leases.len(), 1);
        leases.pop().expect("one lease")
    }

    fn connect(&self) -> Arc<Conn> {
        let info = ConnInfo {
            kind: ConnectionKind::WebSocket,
            version: ProtocolVersion::V2,
            connector_id: "c".into(),
            connector_id_sent: true,
            limit: 10,
            remote_ip: None,
            user_agent: None,
            token: [0; 32],
        };
        let (conn, rx) = self.hub.register_stream(info).expect("registered");
        // The outbound queue stays open for the whole test.
        std::mem::forget(rx);
        conn
    }

    async fn delivered(&self) -> u64 {
        self.buffer
            .stats(CHANNEL)
            .await
            .expect("stats")
            .total
            .delivered
    }
}

#[tokio::test]
async fn an_ack_within_the_lease_is_settled_whatever_the_buffer_clock_says() {
    let f = fixture().await;
    let conn = f.connect();
    let mut lease = f.lease_one(1).await;
    // The buffer's clock (Redis's) runs a minute behind the relay's: its expiry looks past.
    lease.lease_expires_at = Timestamp(lease.lease_expires_at.0 - Duration::from_secs(60));
    let id = lease.envelope.message_id.as_str().to_owned();
    assert!(
        f.hub
            .assign(lease, (Instant::now(), Duration::from_secs(30)))
            .is_none()
    );
    assert_eq!(conn.in_flight(), 1);
    f.hub.sweep();
    assert_eq!(conn.in_flight(), 1, "the lease lapsed on the wrong clock");
    assert_eq!(
        f.hub.settle(&conn, &id, Settle::Ack, None).await,
        SettleOutcome::Acked
    );
    assert_eq!(f.delivered().await, 1);
}

#[tokio::test]
async fn a_copy_held_with_a_lapsed_lease_is_acked_not_left_to_expire() {
    let f = fixture().await;
    let conn = f.connect();
    let primary = f.lease_one(1).await;
    let id = primary.envelope.message_id.clone();
    // A second stored copy of the same message (as RabbitMQ can hold after a cut-short
    // requeue): here another stored message presented under the same id.
    let mut copy = f.lease_one(2).await;
    copy.envelope.message_id = id;
    // Both arrive while the primary's lease is live; it lapses one second later.
    let asked = Instant::now() - Duration::from_secs(29);
    assert!(
        f.hub
            .assign(primary, (asked, Duration::from_secs(30)))
            .is_none()
    );
    assert!(
        f.hub
            .assign(copy, (Instant::now(), Duration::from_secs(30)))
            .is_none()
    );
    assert_eq!(conn.in_flight(), 1, "the copy is held, not sent");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    f.hub.sweep();
    assert_eq!(conn.in_flight(), 0, "the lease lapsed");
    // The background acks are the hub's tasks; with its dispatcher stopped they all end.
    f.hub.stop_leasing();
    f.tracker.close();
    f.tracker.wait().await;
    assert_eq!(
        f.delivered().await,
        1,
        "the copy's lease was dropped and will burn an attempt"
    );
}

#[tokio::test]
async fn closing_waits_for_the_settles_the_connection_started() {
    let f = fixture().await;
    let conn = f.connect();
    let lease = f.lease_one(1).await;
    let id = lease.envelope.message_id.as_str().to_owned();
    assert!(
        f.hub
            .assign(lease, (Instant::now(), Duration::from_secs(30)))
            .is_none()
    );
    let (hub, settler) = (f.hub.clone(), conn.clone());
    let settle = f.hub.start_settle(&conn, async move {
        hub.settle(&settler, &id, Settle::Ack, None).await
    });
    // The close comes before the settle task has run.
    f.hub.unregister_when_settled(&conn).await;
    assert_eq!(settle.await.expect("settle task"), SettleOutcome::Acked);
    assert_eq!(f.delivered().await, 1);
}
