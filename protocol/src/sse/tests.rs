//! SSE tests: the spec's example stream, the WHATWG rules (R-78, R-42) and arbitrary chunkings.

use proptest::prelude::*;

use super::*;
use crate::frames::{Connected, Heartbeat};
use crate::{Timestamp, WebhookMessage};

fn decode_all(chunks: &[&[u8]]) -> Vec<SseEvent> {
    let mut d = SseDecoder::new();
    let mut out = Vec::new();
    for c in chunks {
        d.feed(c, &mut out).unwrap();
    }
    out
}

const SPEC_STREAM: &str = "event: connected\ndata: {\"connection_id\":\"sse_0c5d7e2f9a8b4c6d1e3f5a7b9c0d2e4f\",\"channel\":\"orders\"}\n\nevent: webhook\ndata: {\"type\":\"webhook\",\"message_id\":\"msg_0190f7c2a1b34c5d8e9f0a1b2c3d4e5f\",\"sequence\":42,\"webhook_id\":\"shop-orders\",\"timestamp\":\"2026-03-14T09:27:01.004512+00:00\",\"headers\":{\"content-type\":\"application/json\"},\"payload\":{\"id\":\"t1\"}}\n\nevent: heartbeat\ndata: {\"timestamp\":\"2026-03-14T09:27:31.004990+00:00\"}\n\n";

#[test]
fn v1_events_reproduce_the_spec_example_stream() {
    let connected = ServerFrame::Connected(Connected {
        connection_id: "sse_0c5d7e2f9a8b4c6d1e3f5a7b9c0d2e4f".into(),
        channel: "orders".into(),
        timestamp: Some(Timestamp::now()),
        protocol: None,
        heartbeat_interval_ms: None,
        heartbeat_timeout_ms: None,
        ack_timeout_ms: None,
        max_in_flight: None,
        server_time: None,
    });
    let webhook: WebhookMessage = serde_json::from_str(
        r#"{"message_id":"msg_0190f7c2a1b34c5d8e9f0a1b2c3d4e5f","sequence":42,"webhook_id":"shop-orders","timestamp":"2026-03-14T09:27:01.004512+00:00","headers":{"content-type":"application/json"},"payload":{"id":"t1"}}"#,
    )
    .unwrap();
    let heartbeat = ServerFrame::Heartbeat(Heartbeat {
        timestamp: Some("2026-03-14T09:27:31.004990+00:00".parse().unwrap()),
        server_time: Some(Timestamp::now()),
        in_flight: None,
        queued: None,
    });
    let mut stream = String::new();
    for frame in [
        connected,
        ServerFrame::Webhook(Box::new(webhook)),
        heartbeat,
    ] {
        frame_to_event(&frame, ProtocolVersion::V1)
            .unwrap()
            .write_to(&mut stream);
    }
    assert_eq!(stream, SPEC_STREAM);
}

#[test]
fn v2_webhook_events_carry_an_id_r42() {
    let webhook: WebhookMessage =
        serde_json::from_str(r#"{"message_id":"msg_1","webhook_id":"w","payload":{}}"#).unwrap();
    let event = frame_to_event(
        &ServerFrame::Webhook(Box::new(webhook)),
        ProtocolVersion::V2,
    )
    .unwrap();
    assert!(
        event
            .encode()
            .starts_with("id: msg_1\nevent: webhook\ndata: {\"type\":\"webhook\"")
    );
    assert_eq!(retry_line(2000), "retry: 2000\n\n");
}

#[test]
fn v1_error_and_close_events() {
    let error = frame_to_event(&internal_error_frame(), ProtocolVersion::V1).unwrap();
    assert_eq!(
        error.encode(),
        "event: error\ndata: {\"error\":\"Internal server error\"}\n\n"
    );
    let v2 = frame_to_event(&internal_error_frame(), ProtocolVersion::V2).unwrap();
    assert_eq!(
        v2.data,
        r#"{"type":"error","code":"internal","message":"Internal server error","ref":null}"#
    );
    let close = ServerFrame::Close(crate::CloseReason::Shutdown.notice(Some(1000)));
    assert!(frame_to_event(&close, ProtocolVersion::V1).is_none());
    assert_eq!(
        frame_to_event(&close, ProtocolVersion::V2).unwrap().name(),
        "close"
    );
}

#[test]
fn decoder_reads_the_spec_stream() {
    let events = decode_all(&[SPEC_STREAM.as_bytes()]);
    assert_eq!(events.len(), 3);
    assert_eq!(events[0].name(), "connected");
    let frame = ServerFrame::from_sse(events[1].name(), &events[1].data).unwrap();
    assert!(matches!(frame, ServerFrame::Webhook(w) if w.sequence == 42));
}

#[test]
fn data_lines_join_with_newline_and_one_space_is_removed_r78() {
    let events = decode_all(&[b"data:  x\ndata:y\ndata\n\n"]);
    assert_eq!(events[0].data, " x\ny\n");
    assert_eq!(events[0].name(), "message");
}

#[test]
fn cr_lf_and_crlf_line_ends_all_work_r78() {
    for stream in [
        "event: a\ndata: 1\n\n",
        "event: a\rdata: 1\r\r",
        "event: a\r\ndata: 1\r\n\r\n",
    ] {
        let events = decode_all(&[stream.as_bytes()]);
        assert_eq!(events.len(), 1, "{stream:?}");
        assert_eq!((events[0].name(), events[0].data.as_str()), ("a", "1"));
    }
}

#[test]
fn crlf_split_across_chunks_is_one_line_end() {
    let events = decode_all(&[b"data: 1\r", b"\n\r", b"\n"]);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].data, "1");
}

#[test]
fn an_empty_chunk_between_cr_and_lf_does_not_split_the_pair() {
    let events = decode_all(&[b"data: 1\r", b"", b"\ndata: 2\r\n\r\n"]);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].data, "1\n2");
}

#[test]
fn comments_and_unknown_fields_are_ignored_r78() {
    let events = decode_all(&[b": keep-alive\nfoo: bar\nevent: x\ndata: 1\n\n:\n\n"]);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].data, "1");
}

#[test]
fn multibyte_utf8_split_across_chunks_is_decoded_r78() {
    let text = "data: grüße €😀\n\n".as_bytes();
    for split in 0..text.len() {
        let events = decode_all(&[&text[..split], &text[split..]]);
        assert_eq!(events[0].data, "grüße €😀", "split at {split}");
    }
}

#[test]
fn id_and_retry_fields_are_tracked() {
    let mut d = SseDecoder::new();
    let mut out = Vec::new();
    d.feed(
        b"retry: 2000\n\nid: msg_1\nevent: webhook\ndata: {}\n\nretry: x\n\n",
        &mut out,
    )
    .unwrap();
    assert_eq!(d.retry_ms(), Some(2000));
    assert_eq!(out[0].id.as_deref(), Some("msg_1"));
    assert_eq!(d.last_event_id(), Some("msg_1"));
}

#[test]
fn overlong_lines_are_an_error_not_unbounded_memory() {
    let mut d = SseDecoder::with_max_line(16);
    let mut out = Vec::new();
    assert_eq!(d.feed(&[b'a'; 17], &mut out), Err(LineTooLong(16)));
    assert!(d.feed(b"\ndata: ok\n\n", &mut out).is_ok());
    assert_eq!(out.last().map(|e| e.data.as_str()), Some("ok"));
}

#[test]
fn many_short_data_lines_of_one_event_are_bounded_by_the_event_limit() {
    let mut d = SseDecoder::with_limits(16, 64);
    let mut out = Vec::new();
    let mut result = Ok(());
    // 100 lines of 11 bytes, none over the line limit, no blank line ending the event.
    for _ in 0..100 {
        result = d.feed(b"data: 12345\n", &mut out);
        if result.is_err() {
            break;
        }
    }
    assert_eq!(result, Err(EventTooLarge(64)));
    assert!(out.is_empty());
    // The partial event is forgotten and the decoder goes on.
    assert!(d.feed(b"\ndata: ok\n\n", &mut out).is_ok());
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].data, "ok");
    // An event just within the limit still decodes.
    let mut d = SseDecoder::with_limits(16, 64);
    let mut out = Vec::new();
    for _ in 0..5 {
        d.feed(b"data: 12345\n", &mut out).unwrap();
    }
    d.feed(b"\n", &mut out).unwrap();
    assert_eq!(out[0].data.len(), 5 * 5 + 4);
}

#[test]
fn encoder_never_emits_raw_newlines_inside_a_field() {
    let event = SseEvent {
        id: Some("a\nb".into()),
        event: Some("x\r".into()),
        data: "1\r\n2\r3".into(),
    };
    assert_eq!(
        event.encode(),
        "id: ab\nevent: x\ndata: 1\ndata: 2\ndata: 3\n\n"
    );
}

fn arb_event() -> impl Strategy<Value = SseEvent> {
    (
        proptest::option::of("[a-z0-9_]{1,12}"),
        proptest::option::of("[a-z_]{1,12}"),
        "(\\PC|\n| ){0,40}",
    )
        .prop_map(|(id, event, data)| SseEvent { id, event, data })
}

proptest! {
    /// Encoded events decode to the same events whatever the chunking.
    #[test]
    fn encode_then_decode_round_trips_under_any_chunking(
        events in proptest::collection::vec(arb_event(), 1..6),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
        crlf in any::<bool>(),
    ) {
        let mut wire = String::new();
        for e in &events {
            e.write_to(&mut wire);
        }
        if crlf {
            wire = wire.replace('\n', "\r\n");
        }
        let bytes = wire.as_bytes();
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        points.sort_unstable();
        let mut decoder = SseDecoder::new();
        let mut out = Vec::new();
        let mut start = 0;
        for p in points.into_iter().chain([bytes.len()]) {
            decoder.feed(&bytes[start..p], &mut out).unwrap();
            start = p;
        }
        // ids persist across events as in the standard, so compare what each event set.
        let mut last_id = None;
        prop_assert_eq!(out.len(), events.len());
        for (got, want) in out.iter().zip(&events) {
            if want.id.is_some() {
                last_id = want.id.clone();
            }
            prop_assert_eq!(&got.id, &last_id);
            prop_assert_eq!(&got.event, &want.event);
            prop_assert_eq!(&got.data, &want.data);
        }
    }

    /// Random bytes never panic the decoder.
    #[test]
    fn decoder_never_panics_on_random_bytes(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8)) {
        let mut decoder = SseDecoder::with_max_line(128);
        let mut out = Vec::new();
        for c in &chunks {
            let _ = decoder.feed(c, &mut out);
        }
        for e in &out {
            let _ = ServerFrame::from_sse(e.name(), &e.data);
        }
    }
}
