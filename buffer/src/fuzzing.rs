//! Entry points of the fuzz targets (`fuzz/`, `docs/fuzzing.md`) and of the corpus replay test
//! (`tests/it/fuzz_corpus.rs`). Not part of the API.
//!
//! Each function takes arbitrary bytes, runs this crate's decoders on them and panics only when
//! a property that must hold for every input is broken.

use std::path::PathBuf;
use std::sync::OnceLock;

use crate::embedded::records::{
    Counters, DeadRecord, MsgRecord, dead_key, dead_key_id, decode_channel, encode_channel,
    message_key, split_dead_key, split_message_key, split_queue_key,
};
use crate::rabbitmq::dead::{cursor_of, parse_cursor};
use crate::{Buffer, BufferError, DeadLetterQuery, EmbeddedBuffer, EmbeddedOptions, QueueSettings};

/// Names of the targets this module serves, as `fuzz/fuzz_targets/<name>.rs`.
pub const TARGETS: &[&str] = &["store_records", "dead_letter_cursor"];

/// Runs target `name` on `data`; `false` if this module has no such target.
pub fn run(name: &str, data: &[u8]) -> bool {
    match name {
        "store_records" => store_records(data),
        "dead_letter_cursor" => dead_letter_cursor(data),
        _ => return false,
    }
    true
}

/// The embedded store's records and keys, as read back from the file (a damaged or foreign
/// file must not crash the relay). Every decoder gets the same bytes; whatever decodes
/// re-encodes to bytes that decode to the same value.
pub fn store_records(data: &[u8]) {
    if let Some(rec) = MsgRecord::decode(data) {
        assert_eq!(
            MsgRecord::decode(&rec.encode()),
            Some(rec),
            "message record"
        );
    }
    if let Some(rec) = DeadRecord::decode(data) {
        let head = DeadRecord::decode_head(data);
        assert_eq!(
            head,
            Some((rec.queue.clone(), rec.message_id.clone())),
            "dead record head"
        );
        assert_eq!(DeadRecord::decode(&rec.encode()), Some(rec), "dead record");
    }
    let _ = DeadRecord::decode_head(data);
    if let Some(c) = Counters::decode(data) {
        assert_eq!(Counters::decode(&c.encode()), Some(c), "counters");
    }
    if let Some((settings, ids)) = decode_channel(data) {
        let again = decode_channel(&encode_channel(&settings, &ids));
        assert_eq!(again, Some((settings, ids)), "channel record");
    }
    if let Some((channel, id)) = split_dead_key(data) {
        assert_eq!(split_dead_key(&dead_key(&channel, id)), Some((channel, id)));
    }
    let _ = dead_key_id(data);
    if let Some((channel, queue, seq)) = split_message_key(data) {
        let key = message_key(&channel, &queue, seq);
        assert_eq!(split_message_key(&key), Some((channel, queue, seq)));
    }
    let _ = split_queue_key(data);
}

struct Store {
    runtime: tokio::runtime::Runtime,
    buffer: EmbeddedBuffer,
    _dir: PathBuf,
}

fn store() -> Option<&'static Store> {
    static STORE: OnceLock<Option<Store>> = OnceLock::new();
    STORE
        .get_or_init(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            let dir = std::env::temp_dir().join(format!("wc-fuzz-store-{}", std::process::id()));
            std::fs::create_dir_all(&dir).ok()?;
            let buffer = runtime.block_on(async {
                let b = EmbeddedBuffer::open(dir.join("store.redb"), EmbeddedOptions::default())
                    .await
                    .ok()?;
                b.ensure_channel("orders", &["w".to_owned()], &QueueSettings::default())
                    .await
                    .ok()?;
                Some(b)
            })?;
            Some(Store {
                runtime,
                buffer,
                _dir: dir,
            })
        })
        .as_ref()
}

/// The `cursor` (and `limit`, `webhook_id`) of `GET …/dead-letters`, as the relay passes them
/// to the store. The first line is the cursor, the second the limit, the third the webhook
/// id. The RabbitMQ cursor re-encodes to itself; the embedded store answers a page or
/// `Invalid`, never anything else, and a page is never larger than the limit.
pub fn dead_letter_cursor(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let cursor = lines.next().unwrap_or_default().to_owned();
    let limit = lines
        .next()
        .and_then(|l| l.trim().parse::<usize>().ok())
        .unwrap_or(100);
    let webhook_id = lines.next().map(str::to_owned);
    if let Some(key) = parse_cursor(&cursor) {
        assert_eq!(parse_cursor(&cursor_of(key)), Some(key), "rabbitmq cursor");
    }
    let Some(store) = store() else {
        return;
    };
    let query = DeadLetterQuery {
        webhook_id,
        limit,
        cursor: Some(cursor),
    };
    let result = store
        .runtime
        .block_on(store.buffer.dead_letters("orders", &query));
    match result {
        Ok(page) => assert!(page.items.len() <= limit, "page larger than the limit"),
        Err(BufferError::Invalid(_)) => {}
        Err(e) => panic!("dead-letter query failed with {e:?}"),
    }
}
