#!/usr/bin/env bash
# The full test suite: starts the local servers the tests use, then
#   1. runs every test of the workspace (unit, integration, end-to-end and doc tests) with every
#      cargo feature on, so the feature-gated output modules are tested too;
#   2. builds the connector with each of its module features alone and with none (HTTP mode
#      only), and runs its unit tests without the default modules, so a module's `cfg` gates
#      hold in every combination users can build.
#   3. runs the fast subset of the end-to-end scenarios (scenarios/ci.sh) on the debug binaries
#      step 1 built; each scenario × backend counts as one test (its RESULT line).
# Every test binary runs even when an earlier one failed (--no-fail-fast). Fails when any test
# failed, when a build failed, and also when no test ran at all.
set -uo pipefail
cd "$(dirname "$0")/.."

scripts/services.sh || exit 1

jobs=${CARGO_BUILD_JOBS:-2}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0

echo "== cargo test --workspace --all-features"
cargo test --workspace --all-features --no-fail-fast -j"$jobs" 2>&1 | tee "$log" || status=1

echo "== connector feature builds"
features=$(sed -n '/^\[features\]/,/^\[/p' connector/Cargo.toml \
  | grep -Eo '^[a-z0-9_-]+ =' | cut -d' ' -f1 | grep -v -e '^default$' -e '^full$')
for feature in "" $features; do
  label=${feature:-"(none: HTTP mode and the light modules)"}
  echo "-- webhook-connector --no-default-features --features $label"
  if ! cargo check -p webhook-connector --no-default-features ${feature:+--features "$feature"} \
      --all-targets -j"$jobs" --quiet; then
    echo "test.sh: the connector does not build with feature set: $label" >&2
    status=1
  fi
done
echo "== connector unit tests without the default modules"
cargo test -p webhook-connector --no-default-features --lib --no-fail-fast -j"$jobs" 2>&1 \
  | tee -a "$log" || status=1

echo "== scenarios: the fast subset (scenarios/ci.sh)"
scenarios/ci.sh 2>&1 | tee -a "$log" || status=1

passed=$(grep -Eo '^test result: [a-zA-Z]+\. [0-9]+ passed' "$log" | awk '{s += $4} END {print s + 0}')
failed=$(grep -Eo '^test result: [a-zA-Z]+\. [0-9]+ passed; [0-9]+ failed' "$log" | awk '{s += $6} END {print s + 0}')
passed=$((passed + $(grep -c '^RESULT .* verdict=PASS$' "$log")))
failed=$((failed + $(grep -c '^RESULT .* verdict=FAIL$' "$log")))
echo "$passed passed, $failed failed"
if [ "$passed" -eq 0 ]; then
  echo "test.sh: no test ran" >&2
  exit 1
fi
if [ "$failed" -ne 0 ]; then
  status=1
fi
exit $status
