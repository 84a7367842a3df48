#!/usr/bin/env bash
# The full test suite: starts the local servers the tests use, then runs every test of the
# workspace (unit, integration, end-to-end and doc tests) with every cargo feature on, so the
# feature-gated output modules (zeromq, s3, aws_sqs, clickhouse, gcp_pubsub, kafka, redis_rq's
# RQ mode) are tested too. Fails when any test fails, and also when no test ran at all.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/services.sh

log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --all-features -j"${CARGO_BUILD_JOBS:-2}" 2>&1 | tee "$log"

passed=$(grep -Eo '^test result: ok\. [0-9]+ passed' "$log" | awk '{s += $4} END {print s + 0}')
failed=$(grep -Eo '[0-9]+ failed' "$log" | awk '{s += $1} END {print s + 0}')
echo "$passed passed, $failed failed"
if [ "$passed" -eq 0 ]; then
  echo "test.sh: no test ran" >&2
  exit 1
fi
