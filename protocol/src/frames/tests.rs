//! Frame tests: the spec's JSON examples, field for field, and the malformed-frame rules.

use super::*;

/// Parses `text` as a server frame and re-encodes it; the result must equal `text` exactly.
fn round_trip_server(text: &str) {
    let frame = ServerFrame::decode(text).unwrap();
    assert_eq!(frame.to_json(), text);
}

#[test]
fn spec_server_frame_examples_round_trip_exactly() {
    round_trip_server(
        r#"{"type":"connected","connection_id":"wsc_6f1c0e9a2b3d4c5e8f7a6b5c4d3e2f10","channel":"orders","timestamp":"2026-03-14T09:26:53.589793+00:00"}"#,
    );
    round_trip_server(
        r#"{"type":"webhook","message_id":"msg_0190f7c2a1b34c5d8e9f0a1b2c3d4e5f","sequence":42,"webhook_id":"shop-orders","timestamp":"2026-03-14T09:27:01.004512+00:00","headers":{"host":"relay.example.com","content-type":"application/json","user-agent":"Shopify-Captain-Hook","x-shopify-hmac-sha256":"k3bq…=","content-length":"27"},"payload":{"id":"t1","hello":"world"}}"#,
    );
    round_trip_server(
        r#"{"type":"heartbeat","timestamp":"2026-03-14T09:27:23.590010+00:00","server_time":"2026-03-14T09:27:23.590010+00:00"}"#,
    );
    round_trip_server(
        r#"{"type":"webhook","message_id":"msg_0190f7c2a1b34c5d8e9f0a1b2c3d4e5f","sequence":42,"webhook_id":"stripe","timestamp":"2026-03-14T09:27:01.004512+00:00","headers":{"content-type":"application/json; charset=utf-8","stripe-signature":"t=1773480421,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd"},"payload":{"id":"evt_1","type":"charge.succeeded"},"channel":"payments","received_at":"2026-03-14T09:27:01.004512+00:00","expires_at":"2026-03-15T09:27:01.004512+00:00","delivery_count":1,"lease_expires_at":"2026-03-14T09:27:31.010204+00:00","data_type":"json","content_type":"application/json; charset=utf-8","body":"eyJpZCI6ImV2dF8xIiwidHlwZSI6ImNoYXJnZS5zdWNjZWVkZWQifQ==","namespace":null}"#,
    );
    round_trip_server(
        r#"{"type":"ack_result","ref":"b17","results":[{"message_id":"msg_0190…5f","status":"ok","outcome":"acked"},{"message_id":"msg_0190…60","status":"not_in_flight"}]}"#,
    );
    round_trip_server(
        r#"{"type":"error","code":"malformed_frame","message":"Frame is not a JSON object","ref":null}"#,
    );
    round_trip_server(
        r#"{"type":"close","code":4005,"reason":"admin_disconnect","message":"Disconnected by administrator","reconnect":true,"retry_after_ms":1000}"#,
    );
    round_trip_server(
        r#"{"type":"connected","connection_id":"wsc_6f1c","channel":"payments","timestamp":"2026-03-14T09:26:53.589793+00:00","protocol":2,"heartbeat_interval_ms":30000,"heartbeat_timeout_ms":90000,"ack_timeout_ms":30000,"max_in_flight":20,"server_time":"2026-03-14T09:26:53.589793+00:00"}"#,
    );
    round_trip_server(
        r#"{"type":"heartbeat","timestamp":"2026-03-14T09:27:23.590010+00:00","server_time":"2026-03-14T09:27:23.590010+00:00","in_flight":0,"queued":1}"#,
    );
}

#[test]
fn payload_numbers_keep_their_exact_text() {
    round_trip_server(
        r#"{"type":"webhook","message_id":"m","sequence":1,"webhook_id":"w","timestamp":"2026-03-14T09:27:01.004512+00:00","headers":{},"payload":{"big":123456789012345678901234567890,"f":1.10,"e":1E400}}"#,
    );
}

#[test]
fn unknown_members_and_types_are_ignored_r43() {
    let frame = ServerFrame::decode(
        r#"{"type":"heartbeat","timestamp":"2026-03-14T09:27:23Z","future":{"nested":[1,2]}}"#,
    )
    .unwrap();
    assert!(matches!(frame, ServerFrame::Heartbeat(_)));
    assert!(matches!(
        ServerFrame::decode(r#"{"type":"news","x":1}"#).unwrap(),
        ServerFrame::Unknown(name) if name == "news"
    ));
    assert!(matches!(
        ClientFrame::decode(r#"{"type":"subscribe","x":[1]}"#).unwrap(),
        ClientFrame::Unknown(name) if name == "subscribe"
    ));
    let ack = ClientFrame::decode(r#"{"type":"ack","message_id":"m","extra":{"a":1}}"#).unwrap();
    assert_eq!(
        ack,
        ClientFrame::Ack {
            message_ids: vec!["m".into()],
            reference: None,
            report: None
        }
    );
}

#[test]
fn server_frames_from_sse_events_use_the_event_name() {
    let connected = ServerFrame::from_sse(
        "connected",
        r#"{"connection_id":"sse_1","channel":"orders"}"#,
    )
    .unwrap();
    let ServerFrame::Connected(c) = connected else {
        panic!("not connected")
    };
    assert_eq!(c.connection_id, "sse_1");
    assert_eq!(c.timestamp, None);
    let hb = ServerFrame::from_sse(
        "heartbeat",
        r#"{"timestamp":"2026-03-14T09:27:31.004990+00:00"}"#,
    )
    .unwrap();
    assert!(matches!(hb, ServerFrame::Heartbeat(_)));
    let err = ServerFrame::from_sse("error", r#"{"error":"Internal server error"}"#).unwrap();
    let ServerFrame::Error(e) = err else {
        panic!("not error")
    };
    assert_eq!(e.message, "Internal server error");
    assert_eq!(e.code, FrameErrorCode::Unknown);
}

#[test]
fn malformed_server_frames_are_errors() {
    assert!(ServerFrame::decode("not json").is_err());
    assert!(ServerFrame::decode(r#"{"no":"type"}"#).is_err());
    assert!(ServerFrame::decode(r#"{"type":"webhook"}"#).is_err());
    assert!(
        ServerFrame::decode(
            r#"{"type":"webhook","message_id":"m","webhook_id":"w","headers":{"a":1}}"#
        )
        .is_err()
    );
    assert!(ServerFrame::decode(r#"{"type":"unknown-kind"} trailing"#).is_err());
    assert!(ServerFrame::decode(r#"[1]"#).is_err());
}

#[test]
fn v1_client_frames_parse() {
    assert_eq!(
        ClientFrame::decode(r#"{"type":"ack","message_id":"msg_1"}"#).unwrap(),
        ClientFrame::Ack {
            message_ids: vec!["msg_1".into()],
            reference: None,
            report: None
        }
    );
    assert_eq!(
        ClientFrame::decode(r#"{"type":"nack","message_id":"msg_1","retry":false}"#).unwrap(),
        ClientFrame::Nack {
            message_ids: vec!["msg_1".into()],
            retry: false,
            delay_ms: None,
            reason: None,
            reference: None,
            report: None
        }
    );
    assert_eq!(
        ClientFrame::decode(r#"{"type":"heartbeat"}"#).unwrap(),
        ClientFrame::Heartbeat { timestamp: None }
    );
}

#[test]
fn v2_client_frames_parse() {
    let nack = ClientFrame::decode(
        r#"{"type":"nack","message_id":"msg_b","retry":true,"delay_ms":5000,"reason":"target returned 503","ref":"2"}"#,
    )
    .unwrap();
    assert_eq!(
        nack,
        ClientFrame::Nack {
            message_ids: vec!["msg_b".into()],
            retry: true,
            delay_ms: Some(5000),
            reason: Some("target returned 503".into()),
            reference: Some("2".into()),
            report: None
        }
    );
    assert_eq!(
        nack.to_json(),
        r#"{"type":"nack","message_id":"msg_b","retry":true,"delay_ms":5000,"reason":"target returned 503","ref":"2"}"#
    );
    let ack =
        ClientFrame::decode(r#"{"type":"ack","message_ids":["a","b","a"],"ref":"1"}"#).unwrap();
    assert_eq!(
        ack,
        ClientFrame::Ack {
            message_ids: vec!["a".into(), "b".into(), "a".into()],
            reference: Some("1".into()),
            report: None
        }
    );
    assert_eq!(
        ack.to_json(),
        r#"{"type":"ack","message_ids":["a","b","a"],"ref":"1"}"#
    );
    let touch = ClientFrame::decode(r#"{"type":"touch","message_id":"a"}"#).unwrap();
    assert!(matches!(touch, ClientFrame::Touch { .. }));
    let long_reason = format!(
        r#"{{"type":"nack","message_id":"a","reason":"{}"}}"#,
        "r".repeat(2000)
    );
    let ClientFrame::Nack {
        reason: Some(reason),
        ..
    } = ClientFrame::decode(&long_reason).unwrap()
    else {
        panic!("not a nack")
    };
    assert_eq!(reason.len(), 1024);
}

#[test]
fn malformed_client_frames_get_the_spec_codes_r36() {
    let code = |text: &str| ClientFrame::decode(text).unwrap_err().code;
    use FrameErrorCode::*;
    assert_eq!(code("not json"), MalformedFrame);
    assert_eq!(code("[1,2]"), MalformedFrame);
    assert_eq!(code(r#""ack""#), MalformedFrame);
    assert_eq!(code(r#"{"type":5}"#), MalformedFrame);
    assert_eq!(code(r#"{"message_id":"a"}"#), MalformedFrame);
    assert_eq!(
        code(r#"{"type":"nack","message_id":"a","retry":"yes"}"#),
        InvalidField
    );
    assert_eq!(
        code(r#"{"type":"nack","message_id":"a","delay_ms":-1}"#),
        InvalidField
    );
    assert_eq!(
        code(r#"{"type":"nack","message_id":"a","delay_ms":1.5}"#),
        InvalidField
    );
    assert_eq!(
        code(r#"{"type":"ack","message_id":"a","message_ids":["b"]}"#),
        InvalidField
    );
    assert_eq!(code(r#"{"type":"ack"}"#), InvalidField);
    assert_eq!(code(r#"{"type":"ack","message_id":7}"#), InvalidField);
    assert_eq!(code(r#"{"type":"ack","message_ids":[]}"#), InvalidField);
    assert_eq!(
        code(r#"{"type":"ack","message_ids":["a",1]}"#),
        InvalidField
    );
    assert_eq!(
        code(r#"{"type":"ack","message_id":"a","ref":7}"#),
        InvalidField
    );
    let many: Vec<String> = (0..1001).map(|i| format!("\"m{i}\"")).collect();
    assert_eq!(
        code(&format!(
            r#"{{"type":"ack","message_ids":[{}]}}"#,
            many.join(",")
        )),
        TooManyIds
    );
    assert_eq!(
        ClientFrame::decode_bytes(&[0xff, 0xfe]).unwrap_err().code,
        MalformedFrame
    );
    assert_eq!(
        ClientFrame::decode_binary(b"{}").unwrap_err().code,
        MalformedFrame
    );
}

#[test]
fn error_frames_echo_a_readable_ref() {
    let err = ClientFrame::decode(r#"{"type":"nack","message_id":"a","retry":1,"ref":"r9"}"#)
        .unwrap_err();
    assert_eq!(err.reference.as_deref(), Some("r9"));
    assert_eq!(
        err.to_frame().to_json(),
        r#"{"type":"error","code":"invalid_field","message":"'retry' must be a boolean","ref":"r9"}"#
    );
    let err = ClientFrame::decode("nope").unwrap_err();
    assert_eq!(
        err.to_frame().to_json(),
        r#"{"type":"error","code":"malformed_frame","message":"Frame is not valid JSON","ref":null}"#
    );
}

#[test]
fn ack_and_nack_carry_an_optional_delivery_report() {
    let text = r#"{"type":"nack","message_id":"msg_1","retry":true,"report":{"target_status":500,"error":"target returned 500","response_snippet":"oops"}}"#;
    let frame = ClientFrame::decode(text).unwrap();
    let ClientFrame::Nack {
        report: Some(report),
        ..
    } = &frame
    else {
        panic!("no report in {frame:?}")
    };
    assert_eq!(report.target_status, Some(500));
    assert_eq!(report.response_snippet.as_deref(), Some("oops"));
    assert_eq!(ClientFrame::decode(&frame.to_json()).unwrap(), frame);
    // A malformed report is dropped, never an error (v1 peers and old relays ignore it).
    let odd = ClientFrame::decode(r#"{"type":"ack","message_id":"m","report":"x"}"#).unwrap();
    assert!(matches!(odd, ClientFrame::Ack { report: None, .. }));
}
