//! MQTT 3.1.1 through rumqttc's default client: the options of a connection, and the event loop's
//! events turned into the session's [`Step`]s.

use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, MqttOptions, Outgoing,
    Packet, QoS, TlsConfiguration, Transport,
};

use super::super::error_mapping;
use super::config::MqttServer;
use super::session::Step;
use super::{ErrorCategory, MAX_PACKET, OutputError, tls_error};
use crate::failure;

/// A client and its event loop, not yet connected (the first poll connects).
pub(super) fn start(server: &MqttServer) -> (AsyncClient, EventLoop) {
    let mut o = MqttOptions::new(&server.client_id, &server.host, server.port);
    o.set_keep_alive(Duration::from_secs(server.keepalive))
        .set_clean_session(true)
        .set_max_packet_size(MAX_PACKET, MAX_PACKET);
    if let Some(user) = &server.username {
        o.set_credentials(user, server.password());
    }
    if let Some(tls) = &server.tls {
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            tls.clone(),
        )));
    }
    AsyncClient::new(o, 64)
}

/// Hands a publish to the event loop.
pub(super) async fn publish(
    client: &AsyncClient,
    topic: &str,
    qos: QoS,
    retain: bool,
    body: Vec<u8>,
) -> Result<(), OutputError> {
    client.publish(topic, qos, retain, body).await.map_err(|e| {
        OutputError::transient(ErrorCategory::Connection, format!("MQTT publish: {e}"))
    })
}

/// What one event means to the session; an error ends it.
pub(super) fn step(event: Result<Event, ConnectionError>) -> Result<Step, OutputError> {
    Ok(match event.map_err(|e| connection_error(&e))? {
        Event::Incoming(Packet::ConnAck(_)) => Step::Connected { max_packet: None },
        Event::Outgoing(Outgoing::Publish(pkid)) => Step::Sent(pkid),
        Event::Incoming(Packet::PubAck(ack)) => Step::Done(ack.pkid),
        Event::Incoming(Packet::PubComp(comp)) => Step::Done(comp.pkid),
        _ => Step::Other,
    })
}

/// `docs/reference/module-contract.md` §3.13: refused `CONNECT` for credentials or authorisation is `Unavailable`;
/// network failures and timeouts are `Transient`.
fn connection_error(e: &ConnectionError) -> OutputError {
    let text = format!("MQTT: {e}");
    // With TLS 1.3 a refused client certificate arrives as an alert after the handshake,
    // while the CONNACK is read: look for TLS failures under every variant.
    if failure::is_tls_failure(e) {
        return OutputError::unavailable(ErrorCategory::Connection, format!("MQTT TLS: {text}"));
    }
    match e {
        ConnectionError::ConnectionRefused(
            ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized,
        ) => OutputError::unavailable(ErrorCategory::Auth, text),
        ConnectionError::ConnectionRefused(
            ConnectReturnCode::BadClientId | ConnectReturnCode::RefusedProtocolVersion,
        ) => OutputError::unavailable(ErrorCategory::ClientError, text),
        ConnectionError::ConnectionRefused(_) => {
            OutputError::transient(ErrorCategory::ServerError, text)
        }
        ConnectionError::NetworkTimeout | ConnectionError::FlushTimeout => {
            OutputError::transient(ErrorCategory::Timeout, text)
        }
        ConnectionError::Io(io) => error_mapping::io_error("MQTT", io),
        ConnectionError::Tls(tls) => tls_error(tls, text),
        _ => OutputError::transient(ErrorCategory::Connection, text),
    }
}
