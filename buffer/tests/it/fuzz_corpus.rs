//! Replays the checked-in fuzz corpus (`fuzz/corpus/TARGET/`, docs/fuzzing.md) of this crate's
//! fuzz targets through the same entry points the targets call, so the normal test suite guards
//! every input fuzzing found against regressions.

use std::path::Path;

use webhook_connect_buffer::fuzzing;

#[test]
fn every_target_has_a_nonempty_corpus_that_replays_without_a_failed_property() {
    let fuzz_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let replayed =
        webhook_connect_protocol::fuzzing::replay_corpus(&fuzz_dir, fuzzing::TARGETS, fuzzing::run);
    assert!(replayed >= fuzzing::TARGETS.len());
}
