//! Entry points of the fuzz targets (`fuzz/`, `docs/fuzzing.md`) and of the corpus replay test
//! (`tests/it/fuzz_corpus.rs`). Not part of the API.
//!
//! Each function takes arbitrary bytes, runs one of this crate's decoders on them and panics
//! only when a property that must hold for every input is broken (a round trip that does not
//! come back, a chunking that changes the result). Decoders themselves never panic on input.

use serde_json::Value;

use crate::ack::{AckRequest, parse_batch};
use crate::config_values::{substitute, substitute_str};
use crate::poll::{PollParams, PollResponse};
use crate::sse::{SseDecoder, SseEvent};
use crate::{ClientFrame, Envelope, ProtocolVersion, ServerFrame};

/// Names of the targets this module serves, as `fuzz/fuzz_targets/<name>.rs`.
pub const TARGETS: &[&str] = &[
    "ws_client_frame",
    "ws_server_frame",
    "ack_body",
    "sse_decoder",
    "poll_body",
    "config_substitution",
    "envelope_decode",
];

/// Replays the checked-in corpus of `targets` (`fuzz_dir/corpus/<target>/*`) through `run`, the
/// crate's [`run`]-like dispatcher, in file-name order. Each target must have its fuzz target
/// source and a non-empty corpus. Panics (with the target and file) when a property breaks;
/// returns how many inputs were replayed. Every crate's corpus replay test calls this.
pub fn replay_corpus(
    fuzz_dir: &std::path::Path,
    targets: &[&str],
    run: fn(&str, &[u8]) -> bool,
) -> usize {
    let mut replayed = 0;
    for target in targets {
        let source = fuzz_dir.join("fuzz_targets").join(format!("{target}.rs"));
        assert!(source.is_file(), "{} is missing", source.display());
        let corpus = fuzz_dir.join("corpus").join(target);
        let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(&corpus)
            .unwrap_or_else(|e| panic!("corpus {} unreadable: {e}", corpus.display()))
            .map(|entry| {
                entry
                    .unwrap_or_else(|e| panic!("corpus {}: {e}", corpus.display()))
                    .path()
            })
            .collect();
        files.sort();
        assert!(!files.is_empty(), "corpus {} is empty", corpus.display());
        for file in files {
            let data = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            // Printed only when the test fails: the input that broke a property.
            println!("{target}: {}", file.display());
            assert!(run(target, &data), "no entry point for {target}");
            replayed += 1;
        }
    }
    replayed
}

/// Runs target `name` on `data`; `false` if this module has no such target.
pub fn run(name: &str, data: &[u8]) -> bool {
    match name {
        "ws_client_frame" => ws_client_frame(data),
        "ws_server_frame" => ws_server_frame(data),
        "ack_body" => ack_body(data),
        "sse_decoder" => sse_decoder(data),
        "poll_body" => poll_body(data),
        "config_substitution" => config_substitution(data),
        "envelope_decode" => envelope_decode(data),
        _ => return false,
    }
    true
}

/// `key=value&…` pairs, without percent-decoding (the HTTP layer decodes before us).
fn query_pairs(text: &str) -> Vec<(&str, &str)> {
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect()
}

/// A connector's WebSocket text (or binary) frame as the relay reads it. A decoded frame that
/// the connector could send encodes to JSON that decodes to the same frame.
pub fn ws_client_frame(data: &[u8]) {
    let _ = ClientFrame::decode_binary(data);
    let Ok(frame) = ClientFrame::decode_bytes(data) else {
        return;
    };
    if let ClientFrame::Unknown(_) = frame {
        return;
    }
    let json = frame.to_json();
    match ClientFrame::decode(&json) {
        Ok(again) => assert_eq!(again, frame, "client frame round trip through {json}"),
        Err(e) => panic!("re-encoded client frame {json} refused: {e}"),
    }
}

/// A relay's WebSocket text frame as the connector reads it. A known frame re-encodes to JSON
/// that decodes to a frame with the same JSON.
pub fn ws_server_frame(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(frame) = ServerFrame::decode(text) else {
        return;
    };
    if let ServerFrame::Unknown(_) = frame {
        return;
    }
    let json = frame.to_json();
    match ServerFrame::decode(&json) {
        Ok(again) => assert_eq!(again.to_json(), json, "server frame round trip"),
        Err(e) => panic!("re-encoded server frame {json} refused: {e}"),
    }
}

/// `POST /connect/ack`: the first line is the query string (v1 and v2 forms), the rest the v2
/// batch body. At most 1000 entries are accepted; reasons are cut to 1024 characters.
pub fn ack_body(data: &[u8]) {
    let (query, body) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&data[..0], data),
    };
    if let Ok(query) = std::str::from_utf8(query) {
        let pairs = query_pairs(query);
        for version in [ProtocolVersion::V1, ProtocolVersion::V2] {
            if let Ok(Some(r)) = AckRequest::from_query(pairs.iter().copied(), version) {
                assert!(!r.message_id.is_empty(), "empty message_id accepted");
                assert!(r.reason.as_ref().is_none_or(|t| t.chars().count() <= 1024));
            }
        }
    }
    if let Ok(acks) = parse_batch(body) {
        assert!(
            (1..=1000).contains(&acks.len()),
            "{} acks accepted",
            acks.len()
        );
        for r in &acks {
            assert!(r.reason.as_ref().is_none_or(|t| t.chars().count() <= 1024));
        }
    }
}

/// The connector's SSE decoder. The first byte picks a chunk size: feeding the rest in chunks
/// gives exactly the events of feeding it at once. Every event re-encodes to a stream that
/// decodes to the same event (ids and names lose their line breaks, as specified).
pub fn sse_decoder(data: &[u8]) {
    const MAX_LINE: usize = 4096;
    let Some((&first, stream)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(first % 64) + 1;
    let mut whole = SseDecoder::with_max_line(MAX_LINE);
    let mut whole_events = Vec::new();
    let whole_result = whole.feed(stream, &mut whole_events);
    let mut chunked = SseDecoder::with_max_line(MAX_LINE);
    let mut chunked_events = Vec::new();
    let mut chunked_result = Ok(());
    for piece in stream.chunks(chunk) {
        chunked_result = chunked.feed(piece, &mut chunked_events);
        if chunked_result.is_err() {
            break;
        }
    }
    assert_eq!(
        whole_result.is_ok(),
        chunked_result.is_ok(),
        "line limit depends on chunking"
    );
    if whole_result.is_err() {
        return;
    }
    assert_eq!(whole_events, chunked_events, "events depend on chunking");
    assert_eq!(whole.retry_ms(), chunked.retry_ms());
    assert_eq!(whole.last_event_id(), chunked.last_event_id());
    for event in &whole_events {
        let _ = ServerFrame::from_sse(event.name(), &event.data);
        let wire = event.encode();
        let mut decoder = SseDecoder::new();
        let mut again = Vec::new();
        if decoder.feed(wire.as_bytes(), &mut again).is_err() {
            continue;
        }
        let expected = SseEvent {
            id: event.id.clone(),
            event: event.event.clone(),
            data: event.data.clone(),
        };
        assert_eq!(again.len(), 1, "re-encoded event {wire:?} gave {again:?}");
        assert_eq!(again[0].data, expected.data, "data round trip of {wire:?}");
        if !event.name().contains(['\r', '\n']) {
            assert_eq!(
                again[0].name(),
                expected.name(),
                "name round trip of {wire:?}"
            );
        }
    }
}

/// Long-poll: the first line is the query string, the rest the response body as the connector
/// reads it. An accepted body re-encodes to JSON that reads back to the same JSON.
pub fn poll_body(data: &[u8]) {
    let (query, body) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&data[..0], data),
    };
    if let Ok(query) = std::str::from_utf8(query)
        && let Ok(p) = PollParams::from_query(query_pairs(query))
    {
        assert!((1..=60).contains(&p.timeout_secs));
        assert!((1..=100).contains(&p.max_messages));
    }
    let Ok(response) = serde_json::from_slice::<PollResponse>(body) else {
        return;
    };
    let json = response.to_json();
    match serde_json::from_str::<PollResponse>(&json) {
        Ok(again) => assert_eq!(again.to_json(), json, "poll body round trip"),
        Err(e) => panic!("re-encoded poll body {json} refused: {e}"),
    }
}

/// `{$VAR}` substitution of config values. The input is a JSON document (substituted
/// everywhere) or, if not JSON, one string. Text without `{$` is never changed; a document
/// substituted once has no placeholder of a set variable left that was not written `{$$`.
pub fn config_substitution(data: &[u8]) {
    let lookup = |name: &str| match name {
        "HOST" => Some("relay.example.com".to_owned()),
        "EMPTY" => Some(String::new()),
        "BRACES" => Some("{$HOST}}".to_owned()),
        _ => None,
    };
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match substitute_str(text, &lookup) {
        Ok(None) => assert!(!text.contains("{$"), "placeholder left alone"),
        Ok(Some(_)) => assert!(text.contains("{$"), "text without placeholder changed"),
        Err(message) => assert!(!message.is_empty()),
    }
    if let Ok(mut doc) = serde_json::from_str::<Value>(text) {
        let before = doc.clone();
        match substitute(&mut doc, "", &lookup) {
            Ok(()) => {}
            Err(errors) => assert!(!errors.is_empty()),
        }
        if !text.contains("{$") {
            assert_eq!(doc, before, "document without placeholder changed");
        }
    }
}

/// The stored envelope (buffer record body). A decoded envelope encodes to bytes that decode
/// and encode to the same bytes.
pub fn envelope_decode(data: &[u8]) {
    let Ok(envelope) = Envelope::decode(data) else {
        return;
    };
    let bytes = envelope.encode();
    match Envelope::decode(&bytes) {
        Ok(again) => assert_eq!(again.encode(), bytes, "envelope round trip"),
        Err(e) => panic!("re-encoded envelope refused: {e}"),
    }
}
