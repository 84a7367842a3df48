//! Property tests: what one side encodes, the other side decodes to the same value.

use base64::Engine;
use proptest::prelude::*;
use serde_json::value::RawValue;
use webhook_connect_protocol::envelope::DeliveryInfo;
use webhook_connect_protocol::sse::{SseDecoder, frame_to_event};
use webhook_connect_protocol::{
    ClientFrame, DataType, Envelope, Headers, MessageId, ProtocolVersion, ServerFrame, Timestamp,
};

fn arb_ids() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec("[A-Za-z0-9_.:-]{1,40}", 1..5)
}

fn arb_client_frame() -> impl Strategy<Value = ClientFrame> {
    let reference = proptest::option::of("[a-z0-9]{1,64}");
    prop_oneof![
        (arb_ids(), reference.clone()).prop_map(|(message_ids, reference)| ClientFrame::Ack {
            message_ids,
            reference,
            report: None,
        }),
        (arb_ids(), reference.clone()).prop_map(|(message_ids, reference)| ClientFrame::Touch {
            message_ids,
            reference
        }),
        (
            arb_ids(),
            any::<bool>(),
            proptest::option::of(0u64..10_000_000),
            proptest::option::of("\\PC{0,80}"),
            reference
        )
            .prop_map(|(message_ids, retry, delay_ms, reason, reference)| {
                ClientFrame::Nack {
                    message_ids,
                    retry,
                    delay_ms,
                    reason,
                    reference,
                    report: None,
                }
            }),
        proptest::option::of("[0-9T:.+-]{1,30}")
            .prop_map(|timestamp| ClientFrame::Heartbeat { timestamp }),
    ]
}

fn arb_json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        "\\PC{0,20}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            proptest::collection::vec(("[a-z]{1,6}", inner), 0..4)
                .prop_map(|kv| serde_json::Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn arb_envelope() -> impl Strategy<Value = Envelope> {
    (
        arb_json(),
        proptest::collection::vec(any::<u8>(), 0..300),
        proptest::collection::vec(("[a-z-]{1,12}", "[ -~]{0,30}"), 0..6),
        any::<u64>(),
        proptest::option::of("[a-z0-9_-]{1,10}"),
        any::<bool>(),
    )
        .prop_map(|(payload, body, headers, sequence, namespace, blob)| {
            let mut h = Headers::new();
            for (n, v) in headers {
                h.append(&n, &v);
            }
            let received_at =
                Timestamp::from_unix_micros(1_773_480_421_004_512).unwrap_or_else(Timestamp::now);
            Envelope {
                message_id: MessageId::generate(),
                channel: "orders".into(),
                webhook_id: "shop".into(),
                namespace,
                sequence,
                received_at,
                expires_at: Some(received_at.plus_millis(86_400_000)),
                headers: h,
                raw_headers: None,
                data_type: if blob { DataType::Blob } else { DataType::Json },
                content_type: Some("application/json".into()),
                payload: serde_json::value::to_raw_value(&payload).unwrap_or_default(),
                payload_encoding: None,
                body_omitted: false,
                body,
            }
        })
}

proptest! {
    #[test]
    fn client_frames_round_trip(frame in arb_client_frame()) {
        let decoded = ClientFrame::decode(&frame.to_json()).unwrap();
        let expected = match frame {
            ClientFrame::Nack { message_ids, retry, delay_ms, reason, reference, report } => ClientFrame::Nack {
                message_ids, retry, delay_ms,
                reason: reason.map(|r| r.chars().take(1024).collect()),
                reference,
                report,
            },
            other => other,
        };
        prop_assert_eq!(decoded, expected);
    }

    #[test]
    fn envelopes_round_trip_through_storage(envelope in arb_envelope()) {
        let decoded = Envelope::decode(&envelope.encode()).unwrap();
        prop_assert_eq!(&decoded.body, &envelope.body);
        prop_assert_eq!(decoded.payload.get(), envelope.payload.get());
        prop_assert_eq!(&decoded.headers, &envelope.headers);
        prop_assert_eq!(decoded.sequence, envelope.sequence);
        prop_assert_eq!(&decoded.namespace, &envelope.namespace);
        prop_assert_eq!(decoded.data_type, envelope.data_type);
    }

    /// An envelope delivered over WebSocket or SSE, v1 or v2, reaches the connector with the same
    /// payload, headers and (v2) the exact body bytes.
    #[test]
    fn webhook_frames_survive_ws_and_sse_in_both_versions(envelope in arb_envelope(), v2 in any::<bool>()) {
        let version = if v2 { ProtocolVersion::V2 } else { ProtocolVersion::V1 };
        let delivery = DeliveryInfo { delivery_count: 2, lease_expires_at: envelope.received_at.plus_millis(30_000) };
        let frame = ServerFrame::Webhook(Box::new(envelope.to_webhook(version, delivery)));
        let ws = ServerFrame::decode(&frame.to_json()).unwrap();
        let event = frame_to_event(&frame, version).unwrap();
        let mut decoder = SseDecoder::new();
        let mut events = Vec::new();
        decoder.feed(event.encode().as_bytes(), &mut events).unwrap();
        prop_assert_eq!(events.len(), 1);
        let sse = ServerFrame::from_sse(events[0].name(), &events[0].data).unwrap();
        for got in [ws, sse] {
            let ServerFrame::Webhook(m) = got else { return Err(TestCaseError::fail("not a webhook")) };
            let expected_payload: serde_json::Value = serde_json::from_str(envelope.payload.get()).unwrap();
            let got_payload: serde_json::Value = serde_json::from_str(m.payload.get()).unwrap();
            prop_assert_eq!(got_payload, expected_payload);
            prop_assert_eq!(&m.headers, &envelope.headers);
            prop_assert_eq!(m.message_id.as_str(), envelope.message_id.as_str());
            if v2 {
                let body = base64::engine::general_purpose::STANDARD.decode(m.body.as_deref().unwrap_or("")).unwrap();
                prop_assert_eq!(body, envelope.body.clone());
                prop_assert_eq!(m.delivery_count, Some(2));
            } else {
                prop_assert!(m.body.is_none() && m.delivery_count.is_none());
            }
        }
    }
}

#[test]
fn raw_payload_text_is_kept_verbatim() {
    let raw =
        RawValue::from_string(r#"{"amount":10.50,"id":12345678901234567890123}"#.into()).unwrap();
    let json = serde_json::to_string(&raw).unwrap();
    assert_eq!(json, r#"{"amount":10.50,"id":12345678901234567890123}"#);
}
