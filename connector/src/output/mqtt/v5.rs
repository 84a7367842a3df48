//! MQTT 5.0 through rumqttc's `v5` client: the options of a connection, the event loop's events
//! turned into the session's [`Step`]s, and the meaning of the MQTT 5 reason codes
//! (`docs/reference/module-contract.md` §2.4; the tables are in the module documentation of `output::mqtt`).

use std::time::Duration;

use rumqttc::v5::mqttbytes::QoS as QoS5;
use rumqttc::v5::mqttbytes::v5::{
    ConnectReturnCode, DisconnectReasonCode, Packet, PubAckReason, PubCompReason, PubRecReason,
};
use rumqttc::v5::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, StateError};
use rumqttc::{Outgoing, QoS, TlsConfiguration, Transport};

use super::super::error_mapping;
use super::config::MqttServer;
use super::session::Step;
use super::{ErrorCategory, OutputError, tls_error};
use crate::failure;

/// A client and its event loop, not yet connected (the first poll connects). No session expiry
/// interval is sent, so the broker drops the session with the connection, as a 3.1.1 clean
/// session does.
pub(super) fn start(server: &MqttServer) -> (AsyncClient, Events) {
    let mut o = MqttOptions::new(&server.client_id, &server.host, server.port);
    o.set_keep_alive(Duration::from_secs(server.keepalive))
        .set_clean_start(true);
    if let Some(user) = &server.username {
        o.set_credentials(user, server.password());
    }
    if let Some(tls) = &server.tls {
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            tls.clone(),
        )));
    }
    let (client, events) = AsyncClient::new(o, 64);
    (
        client,
        Events {
            events,
            window: u16::MAX,
            stuck: 0,
        },
    )
}

fn qos5(qos: QoS) -> QoS5 {
    match qos {
        QoS::AtMostOnce => QoS5::AtMostOnce,
        QoS::AtLeastOnce => QoS5::AtLeastOnce,
        QoS::ExactlyOnce => QoS5::ExactlyOnce,
    }
}

/// Hands a publish to the event loop, unless the packet would be larger than the broker's
/// Maximum Packet Size from its `CONNACK` (`max_packet`): rumqttc would refuse to write it and
/// end the connection, failing every other waiting publish with it.
pub(super) async fn publish(
    client: &AsyncClient,
    topic: &str,
    qos: QoS,
    retain: bool,
    body: Vec<u8>,
    max_packet: Option<u32>,
) -> Result<(), OutputError> {
    let size = publish_size(topic.len(), qos, body.len());
    if let Some(max) = max_packet
        && size > usize::try_from(max).unwrap_or(usize::MAX)
    {
        return Err(OutputError::permanent(
            ErrorCategory::InvalidData,
            format!(
                "MQTT 5: the message makes a {size}-byte PUBLISH packet, larger than the \
                 broker's Maximum Packet Size of {max} bytes (reason code 0x95, packet too large)"
            ),
        ));
    }
    client
        .publish(topic, qos5(qos), retain, body)
        .await
        .map_err(|e| {
            OutputError::transient(ErrorCategory::Connection, format!("MQTT publish: {e}"))
        })
}

/// The size of a PUBLISH packet without properties, as rumqttc writes it: fixed header, topic,
/// packet id (QoS 1 and 2), an empty property list and the payload.
fn publish_size(topic: usize, qos: QoS, payload: usize) -> usize {
    let packet_id = if qos == QoS::AtMostOnce { 0 } else { 2 };
    let remaining = 2 + topic + packet_id + 1 + payload;
    let length_bytes = match remaining {
        0..128 => 1,
        128..16_384 => 2,
        16_384..2_097_152 => 3,
        _ => 4,
    };
    1 + length_bytes + remaining
}

/// The event loop of one connection.
pub(super) struct Events {
    events: EventLoop,
    /// The broker's Receive Maximum: how many QoS 1 and 2 publishes rumqttc keeps in flight.
    window: u16,
    /// In-flight slots that rumqttc 0.25 never frees: it does not count a QoS 2 publish as
    /// finished when the broker refuses it in `PUBREC` (or answers `PUBCOMP` with a failure).
    stuck: u16,
}

impl Events {
    /// Why this connection cannot send any more publishes, if it cannot: every in-flight slot
    /// is held by a refused QoS 2 publish. The session then ends and the next use starts a new
    /// one.
    pub(super) fn exhausted(&self) -> Option<OutputError> {
        (self.stuck >= self.window).then(|| {
            OutputError::transient(
                ErrorCategory::Connection,
                format!(
                    "MQTT 5: the broker refused {} QoS 2 publishes, whose in-flight slots the \
                     client does not free; reconnecting",
                    self.stuck
                ),
            )
        })
    }

    /// The next step; an error ends the session.
    pub(super) async fn next(&mut self) -> Result<Step, OutputError> {
        let event = self.events.poll().await.map_err(|e| connection_error(&e))?;
        Ok(match event {
            Event::Incoming(Packet::ConnAck(ack)) => {
                let properties = ack.properties.as_ref();
                if let Some(window) = properties.and_then(|p| p.receive_max) {
                    self.window = window;
                }
                Step::Connected {
                    max_packet: properties.and_then(|p| p.max_packet_size),
                }
            }
            Event::Outgoing(Outgoing::Publish(pkid)) => Step::Sent(pkid),
            Event::Incoming(Packet::PubAck(ack)) => match puback_failure(ack.reason) {
                None => Step::Done(ack.pkid),
                Some(code) => Step::Refused(ack.pkid, publish_refused("PUBACK", code)),
            },
            Event::Incoming(Packet::PubRec(rec)) => match pubrec_failure(rec.reason) {
                None => Step::Other,
                Some(code) => {
                    self.stuck = self.stuck.saturating_add(1);
                    Step::Refused(rec.pkid, publish_refused("PUBREC", code))
                }
            },
            Event::Incoming(Packet::PubComp(comp)) => match comp.reason {
                PubCompReason::Success => Step::Done(comp.pkid),
                PubCompReason::PacketIdentifierNotFound => {
                    self.stuck = self.stuck.saturating_add(1);
                    Step::Refused(comp.pkid, publish_refused("PUBCOMP", 0x92))
                }
            },
            _ => Step::Other,
        })
    }
}

/// The failure code of a `PUBACK`; `None` for success, also "no matching subscribers" (0x10).
fn puback_failure(reason: PubAckReason) -> Option<u8> {
    match reason {
        PubAckReason::Success | PubAckReason::NoMatchingSubscribers => None,
        PubAckReason::UnspecifiedError => Some(0x80),
        PubAckReason::ImplementationSpecificError => Some(0x83),
        PubAckReason::NotAuthorized => Some(0x87),
        PubAckReason::TopicNameInvalid => Some(0x90),
        PubAckReason::PacketIdentifierInUse => Some(0x91),
        PubAckReason::QuotaExceeded => Some(0x97),
        PubAckReason::PayloadFormatInvalid => Some(0x99),
    }
}

/// The failure code of a `PUBREC`; `None` for success, also "no matching subscribers" (0x10).
fn pubrec_failure(reason: PubRecReason) -> Option<u8> {
    match reason {
        PubRecReason::Success | PubRecReason::NoMatchingSubscribers => None,
        PubRecReason::UnspecifiedError => Some(0x80),
        PubRecReason::ImplementationSpecificError => Some(0x83),
        PubRecReason::NotAuthorized => Some(0x87),
        PubRecReason::TopicNameInvalid => Some(0x90),
        PubRecReason::PacketIdentifierInUse => Some(0x91),
        PubRecReason::QuotaExceeded => Some(0x97),
        PubRecReason::PayloadFormatInvalid => Some(0x99),
    }
}

/// The MQTT 5 name of a failure reason code of the publish acknowledgements.
fn reason_name(code: u8) -> &'static str {
    match code {
        0x80 => "unspecified error",
        0x83 => "implementation specific error",
        0x87 => "not authorized",
        0x90 => "topic name invalid",
        0x91 => "packet identifier in use",
        0x92 => "packet identifier not found",
        0x95 => "packet too large",
        0x97 => "quota exceeded",
        0x99 => "payload format invalid",
        _ => "unknown reason code",
    }
}

/// What a failure reason code (0x80 and above) in `PUBACK`, `PUBREC` or `PUBCOMP` means for the
/// message (`docs/reference/module-contract.md` §2.4, §3.13).
fn publish_refused(packet: &str, code: u8) -> OutputError {
    let text = format!(
        "MQTT 5: the broker refused the message: {packet} reason code 0x{code:02X} ({})",
        reason_name(code)
    );
    match code {
        0x87 => OutputError::unavailable(ErrorCategory::Auth, text),
        0x90 | 0x95 | 0x99 => OutputError::permanent(ErrorCategory::InvalidData, text),
        0x83 => OutputError::permanent(ErrorCategory::ClientError, text),
        0x97 => OutputError::transient(ErrorCategory::RateLimited, text),
        0x91 | 0x92 => OutputError::transient(ErrorCategory::Other, text),
        _ => OutputError::transient(ErrorCategory::ServerError, text),
    }
}

/// What a refused `CONNECT` means (`docs/reference/module-contract.md` §3.13: credentials or authorisation are
/// `Unavailable`).
fn connect_refused(code: ConnectReturnCode, text: String) -> OutputError {
    use ConnectReturnCode as C;
    match code {
        C::BadUserNamePassword | C::NotAuthorized | C::Banned | C::BadAuthenticationMethod => {
            OutputError::unavailable(ErrorCategory::Auth, text)
        }
        // Refusals that only a change of configuration (or of broker) can lift.
        C::UnsupportedProtocolVersion
        | C::RefusedProtocolVersion
        | C::ClientIdentifierNotValid
        | C::BadClientId
        | C::MalformedPacket
        | C::ProtocolError
        | C::ServerMoved
        | C::TopicNameInvalid
        | C::PacketTooLarge
        | C::PayloadFormatInvalid
        | C::RetainNotSupported
        | C::QoSNotSupported => OutputError::unavailable(ErrorCategory::ClientError, text),
        C::QuotaExceeded | C::ConnectionRateExceeded => {
            OutputError::transient(ErrorCategory::RateLimited, text)
        }
        C::Success
        | C::UnspecifiedError
        | C::ImplementationSpecificError
        | C::ServerUnavailable
        | C::ServiceUnavailable
        | C::ServerBusy
        | C::UseAnotherServer => OutputError::transient(ErrorCategory::ServerError, text),
    }
}

/// What a `DISCONNECT` from the broker means. It ends the session and fails every waiting
/// publish, so it is not blamed on one message: `Unavailable` when we lost the broker's
/// authorisation, `Transient` otherwise.
fn disconnected(code: DisconnectReasonCode, text: String) -> OutputError {
    use DisconnectReasonCode as D;
    match code {
        D::NotAuthorized => OutputError::unavailable(ErrorCategory::Auth, text),
        D::ServerBusy | D::QuotaExceeded | D::MessageRateTooHigh | D::ConnectionRateExceeded => {
            OutputError::transient(ErrorCategory::RateLimited, text)
        }
        D::KeepAliveTimeout => OutputError::transient(ErrorCategory::Timeout, text),
        _ => OutputError::transient(ErrorCategory::Connection, text),
    }
}

/// The socket error under `e`, if there is one. rumqttc's v5 codec wraps it in an error without
/// a source, which hides it from a walk over the sources.
fn io_error_of(e: &ConnectionError) -> Option<&std::io::Error> {
    use rumqttc::v5::mqttbytes::Error as Codec;
    match e {
        ConnectionError::Io(io)
        | ConnectionError::MqttState(
            StateError::Io(io) | StateError::Deserialization(Codec::Io(io)),
        ) => Some(io),
        _ => None,
    }
}

/// `docs/reference/module-contract.md` §3.13 for the errors that end a connection: refused `CONNECT` as
/// [`connect_refused`], a failed TLS handshake `Unavailable`, network failures and timeouts
/// `Transient`.
fn connection_error(e: &ConnectionError) -> OutputError {
    let text = format!("MQTT: {e}");
    // With TLS 1.3 a refused client certificate arrives as an alert after the handshake,
    // while the CONNACK is read.
    if failure::is_tls_failure(e) || io_error_of(e).is_some_and(|io| failure::is_tls_failure(io)) {
        return OutputError::unavailable(ErrorCategory::Connection, format!("MQTT TLS: {text}"));
    }
    if let Some(io) = io_error_of(e) {
        return error_mapping::io_error("MQTT", io);
    }
    match e {
        ConnectionError::ConnectionRefused(code) => connect_refused(*code, text),
        ConnectionError::MqttState(StateError::ServerDisconnect { reason_code, .. }) => {
            disconnected(*reason_code, text)
        }
        ConnectionError::Timeout(_) | ConnectionError::MqttState(StateError::AwaitPingResp) => {
            OutputError::transient(ErrorCategory::Timeout, text)
        }
        ConnectionError::Tls(tls) => tls_error(tls, text),
        _ => OutputError::transient(ErrorCategory::Connection, text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::ErrorKind;

    fn kind(e: &OutputError) -> (ErrorKind, ErrorCategory) {
        (e.kind, e.category)
    }

    #[test]
    fn publish_reason_codes_are_classified() {
        for (code, expected) in [
            (0x80, (ErrorKind::Transient, ErrorCategory::ServerError)),
            (0x83, (ErrorKind::Permanent, ErrorCategory::ClientError)),
            (0x87, (ErrorKind::Unavailable, ErrorCategory::Auth)),
            (0x90, (ErrorKind::Permanent, ErrorCategory::InvalidData)),
            (0x91, (ErrorKind::Transient, ErrorCategory::Other)),
            (0x92, (ErrorKind::Transient, ErrorCategory::Other)),
            (0x95, (ErrorKind::Permanent, ErrorCategory::InvalidData)),
            (0x97, (ErrorKind::Transient, ErrorCategory::RateLimited)),
            (0x99, (ErrorKind::Permanent, ErrorCategory::InvalidData)),
            (0xA0, (ErrorKind::Transient, ErrorCategory::ServerError)),
        ] {
            let e = publish_refused("PUBACK", code);
            assert_eq!(kind(&e), expected, "0x{code:02X}");
            assert!(e.message.contains(&format!("0x{code:02X}")), "{e}");
        }
    }

    #[test]
    fn acknowledgements_fail_only_for_failure_codes() {
        assert_eq!(puback_failure(PubAckReason::Success), None);
        assert_eq!(puback_failure(PubAckReason::NoMatchingSubscribers), None);
        assert_eq!(puback_failure(PubAckReason::NotAuthorized), Some(0x87));
        assert_eq!(
            puback_failure(PubAckReason::PayloadFormatInvalid),
            Some(0x99)
        );
        assert_eq!(pubrec_failure(PubRecReason::Success), None);
        assert_eq!(pubrec_failure(PubRecReason::NoMatchingSubscribers), None);
        assert_eq!(pubrec_failure(PubRecReason::TopicNameInvalid), Some(0x90));
        assert_eq!(pubrec_failure(PubRecReason::QuotaExceeded), Some(0x97));
    }

    #[test]
    fn refused_connections_are_classified() {
        let refused = |code| kind(&connect_refused(code, String::new()));
        for code in [
            ConnectReturnCode::BadUserNamePassword,
            ConnectReturnCode::NotAuthorized,
            ConnectReturnCode::Banned,
        ] {
            assert_eq!(
                refused(code),
                (ErrorKind::Unavailable, ErrorCategory::Auth),
                "{code:?}"
            );
        }
        for code in [
            ConnectReturnCode::ServerUnavailable,
            ConnectReturnCode::ServerBusy,
        ] {
            assert_eq!(
                refused(code),
                (ErrorKind::Transient, ErrorCategory::ServerError),
                "{code:?}"
            );
        }
        assert_eq!(
            refused(ConnectReturnCode::ConnectionRateExceeded),
            (ErrorKind::Transient, ErrorCategory::RateLimited)
        );
        assert_eq!(
            refused(ConnectReturnCode::UnsupportedProtocolVersion),
            (ErrorKind::Unavailable, ErrorCategory::ClientError)
        );
    }

    #[test]
    fn a_disconnect_is_blamed_on_no_single_message() {
        let disconnect = |code| kind(&disconnected(code, String::new()));
        assert_eq!(
            disconnect(DisconnectReasonCode::NotAuthorized),
            (ErrorKind::Unavailable, ErrorCategory::Auth)
        );
        for code in [
            DisconnectReasonCode::PacketTooLarge,
            DisconnectReasonCode::PayloadFormatInvalid,
            DisconnectReasonCode::SessionTakenOver,
            DisconnectReasonCode::ServerShuttingDown,
        ] {
            assert_eq!(disconnect(code).0, ErrorKind::Transient, "{code:?}");
        }
    }

    #[test]
    fn the_packet_size_is_what_rumqttc_writes() {
        use rumqttc::v5::mqttbytes::v5::Publish;
        for (topic, qos, payload) in [
            ("a", QoS::AtMostOnce, 0),
            ("a/b", QoS::AtLeastOnce, 100),
            ("webhooks/orders", QoS::ExactlyOnce, 124),
            ("webhooks/orders", QoS::AtLeastOnce, 20_000),
            ("t", QoS::ExactlyOnce, 3_000_000),
        ] {
            let mut p = Publish::new(topic, qos5(qos), vec![0u8; payload], None);
            p.pkid = u16::from(qos != QoS::AtMostOnce);
            assert_eq!(
                publish_size(topic.len(), qos, payload),
                p.size(),
                "{topic} {qos:?} {payload}"
            );
        }
    }
}
