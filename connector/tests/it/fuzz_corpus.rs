//! Replays the checked-in fuzz corpus (`fuzz/corpus/TARGET/`, docs/fuzzing.md) of this crate's
//! fuzz targets through the same entry points the targets call, so the normal test suite guards
//! every input fuzzing found against regressions.

use std::path::{Path, PathBuf};

use webhook_connector::fuzzing;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

#[test]
fn every_target_of_this_crate_has_a_fuzz_target_and_a_nonempty_corpus() {
    for target in fuzzing::TARGETS {
        let source = fuzz_dir().join("fuzz_targets").join(format!("{target}.rs"));
        assert!(source.is_file(), "{} is missing", source.display());
        let corpus = fuzz_dir().join("corpus").join(target);
        let count = std::fs::read_dir(&corpus)
            .unwrap_or_else(|e| panic!("corpus {} unreadable: {e}", corpus.display()))
            .count();
        assert!(count > 0, "corpus {} is empty", corpus.display());
    }
}

#[test]
fn fuzz_corpus_replays_without_a_failed_property() {
    let mut replayed = 0;
    for target in fuzzing::TARGETS {
        let corpus = fuzz_dir().join("corpus").join(target);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&corpus)
            .unwrap_or_else(|e| panic!("corpus {} unreadable: {e}", corpus.display()))
            .map(|entry| entry.expect("corpus entry").path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "corpus {} is empty", corpus.display());
        for file in files {
            let data = std::fs::read(&file).expect("corpus file");
            // Printed only when the test fails: the input that broke a property.
            println!("{target}: {}", file.display());
            assert!(fuzzing::run(target, &data), "no entry point for {target}");
            replayed += 1;
        }
    }
    assert!(replayed > 0);
}
