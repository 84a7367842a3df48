#!/usr/bin/env bash
# Coverage-guided fuzzing of the parsers that face the network or a config file (docs/fuzzing.md).
#
#   scripts/fuzz.sh --list            one target name per line
#   scripts/fuzz.sh TARGET SECONDS    fuzz TARGET for SECONDS; non-zero exit on a crash
#
# Uses cargo-fuzz (libFuzzer) on the stable toolchain: RUSTC_BOOTSTRAP=1 lets stable rustc take
# the sanitizer-coverage flags cargo-fuzz passes. cargo-fuzz is installed on first use into
# ${XDG_CACHE_HOME:-$HOME/.cache}/webhook-connect/tools. The checked-in corpus
# (fuzz/corpus/TARGET) is read, never written: new inputs go to fuzz/work/TARGET, crashes to
# fuzz/artifacts/TARGET/. Environment: FUZZ_JOBS (cargo build jobs, default 2),
# FUZZ_TARGET_DIR (build directory, default fuzz/target), FUZZ_ARGS (extra libFuzzer flags).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
fuzz_dir="$root/fuzz"

list_targets() {
    for f in "$fuzz_dir"/fuzz_targets/*.rs; do
        basename "$f" .rs
    done
}

if [[ "${1:-}" == "--list" ]]; then
    list_targets
    exit 0
fi
if [[ $# -ne 2 || ! "$2" =~ ^[0-9]+$ ]]; then
    echo "usage: $0 --list | $0 TARGET SECONDS" >&2
    exit 2
fi
target=$1
seconds=$2
if [[ "$target" == */* || ! -f "$fuzz_dir/fuzz_targets/$target.rs" ]]; then
    echo "unknown fuzz target: $target (see $0 --list)" >&2
    exit 2
fi

tools="${XDG_CACHE_HOME:-$HOME/.cache}/webhook-connect/tools"
export PATH="$tools/bin:$PATH"
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "Installing cargo-fuzz into $tools" >&2
    cargo install cargo-fuzz --locked --root "$tools" -j "${FUZZ_JOBS:-2}"
fi

export RUSTC_BOOTSTRAP=1
export CARGO_BUILD_JOBS="${FUZZ_JOBS:-2}"
target_dir="${FUZZ_TARGET_DIR:-$fuzz_dir/target}"
corpus="$fuzz_dir/corpus/$target"
work="$fuzz_dir/work/$target"
artifacts="$fuzz_dir/artifacts/$target"
mkdir -p "$corpus" "$work" "$artifacts"

cd "$fuzz_dir"
log="$fuzz_dir/work/$target.log"
set +e
# shellcheck disable=SC2086
cargo fuzz run -O --target-dir "$target_dir" "$target" "$work" "$corpus" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
    -artifact_prefix="$artifacts/" -print_final_stats=1 ${FUZZ_ARGS:-} 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
echo "fuzz.sh: $target: ${seconds}s, ${runs:-?} executions, exit $status" >&2
if [[ $status -ne 0 ]]; then
    echo "fuzz.sh: $target crashed; the input is in $artifacts/ (replay: cargo fuzz run $target FILE)" >&2
fi
exit "$status"
