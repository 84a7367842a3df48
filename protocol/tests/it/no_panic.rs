//! Every decoder that faces the network gets random bytes and must return, never panic.

use proptest::prelude::*;
use webhook_connect_protocol::ack::{AckRequest, parse_batch};
use webhook_connect_protocol::poll::{PollParams, PollResponse};
use webhook_connect_protocol::sse::SseDecoder;
use webhook_connect_protocol::token::parse_authorization;
use webhook_connect_protocol::{ClientFrame, Envelope, ProtocolVersion, ServerFrame, Timestamp};

/// Random bytes, biased towards JSON-ish text so the parsers get past their first byte.
fn input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..256),
        "[{}\\[\\]\":,a-z0-9 .\\-\\\\]{0,200}".prop_map(String::into_bytes),
        r#"\{"type":"(ack|nack|touch|heartbeat|webhook|connected|close|error|ack_result)"[^}]{0,120}\}"#
            .prop_map(String::into_bytes),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn decoders_never_panic(bytes in input()) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = ClientFrame::decode_bytes(&bytes);
        let _ = ClientFrame::decode(&text);
        let _ = ServerFrame::decode(&text);
        for event in ["connected", "webhook", "heartbeat", "error", "close", "x"] {
            let _ = ServerFrame::from_sse(event, &text);
        }
        let _ = Envelope::decode(&bytes);
        let mut stored = b"WCE1".to_vec();
        stored.extend_from_slice(&(bytes.len() as u32 / 2).to_be_bytes());
        stored.extend_from_slice(&bytes);
        let _ = Envelope::decode(&stored);
        let _ = parse_batch(&bytes);
        let _ = serde_json::from_slice::<PollResponse>(&bytes);
        let _ = parse_authorization(Some(&bytes));
        let _ = ProtocolVersion::from_request_header(Some(&bytes));
        let _ = text.parse::<Timestamp>();
        let _ = PollParams::from_query([("timeout", &*text), ("max_messages", &*text)]);
        let _ = AckRequest::from_query([("message_id", &*text), ("status", &*text), ("retry", &*text)], ProtocolVersion::V2);
        let mut decoder = SseDecoder::with_max_line(64);
        let mut out = Vec::new();
        let _ = decoder.feed(&bytes, &mut out);
    }
}
