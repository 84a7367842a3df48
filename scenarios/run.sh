#!/usr/bin/env bash
# Runs the end-to-end scenarios of scenarios/ on this machine with real processes: release builds
# of webhook-relay and webhook-connector, the brokers of scripts/services.sh, local HTTP targets.
#
#   scenarios/run.sh --list                          the scenario names, one per line
#   scenarios/run.sh [NAME...] [--backend B]          run them (no NAME: all of them);
#                                                     B = embedded | redis | rabbitmq | all (default)
#
# For each scenario and backend it prints exactly one line
#   RESULT scenario=NAME backend=B sent=N accepted=N delivered=N lost=N duplicated=N seconds=S verdict=PASS|FAIL
# and it exits non-zero when any verdict is FAIL. Scenario output goes to stderr.
#
# Environment:
#   WC_BIN_DIR      directory holding webhook-relay and webhook-connector (default: the release
#                   build of ${CARGO_TARGET_DIR:-target}, built when missing)
#   WC_NO_BUILD=1   never build; fail when the binaries are missing
#   WC_NICE         niceness of everything started (default 10)
#   WC_KEEP_WORK=1  keep every run's work directory (logs, arrivals); failed runs always keep it
#   WC_SCEN_REDIS_URL, WC_SCEN_RABBITMQ_URL (without vhost), WC_SCEN_RABBITMQ_USER,
#   WC_SCEN_RABBITMQ_API, WC_SCEN_POSTGRES_URL   the shared servers (defaults: loopback, guest)
#   WC_SCEN_SERVICES=external   do not check or start local servers with scripts/services.sh
#                   (the servers run elsewhere, e.g. in containers: docker/scenarios/)
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SCEN=$ROOT/scenarios

scenario_names() {
  for d in "$SCEN"/*/; do
    [ -f "$d/steps.sh" ] && basename "$d"
  done
}
supported_backends() { sed -n 's/^BACKENDS="\(.*\)"/\1/p' "$SCEN/$1/steps.sh"; }
time_limit() { local t; t=$(sed -n 's/^TIME_LIMIT=\([0-9]*\)/\1/p' "$SCEN/$1/steps.sh"); echo "${t:-300}"; }

names=()
backend=all
while [ $# -gt 0 ]; do
  case "$1" in
    --list) scenario_names; exit 0 ;;
    --backend) backend=${2:-}; shift ;;
    --backend=*) backend=${1#--backend=} ;;
    -h|--help) sed -n '2,/^set /p' "$0" | grep '^#' | cut -c3-; exit 0 ;;
    -*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    *)
      [ -f "$SCEN/$1/steps.sh" ] || { echo "run.sh: no scenario named $1 (see --list)" >&2; exit 2; }
      names+=("$1") ;;
  esac
  shift
done
case "$backend" in embedded|redis|rabbitmq|all) ;; *)
  echo "run.sh: --backend must be embedded, redis, rabbitmq or all" >&2; exit 2 ;;
esac
[ ${#names[@]} -gt 0 ] || mapfile -t names < <(scenario_names)

# Binaries: built once, reused (CI passes what it built through WC_BIN_DIR).
if [ -z "${WC_BIN_DIR:-}" ]; then
  target=${CARGO_TARGET_DIR:-$ROOT/target}
  WC_BIN_DIR=$target/release
  if [ -z "${WC_NO_BUILD:-}" ]; then
    echo "== building release binaries (cargo build --release; slow the first time)" >&2
    (cd "$ROOT" && nice -n 10 cargo build --release -j"${CARGO_BUILD_JOBS:-2}" -q \
      -p webhook-relay --bin webhook-relay -p webhook-connector --bin webhook-connector) || exit 1
  fi
fi
for b in webhook-relay webhook-connector; do
  [ -x "$WC_BIN_DIR/$b" ] || { echo "run.sh: $WC_BIN_DIR/$b is missing (set WC_BIN_DIR or build)" >&2; exit 1; }
done
export WC_BIN_DIR

needs=()
for name in "${names[@]}"; do needs+=($(supported_backends "$name")); done
services=()
[[ " ${needs[*]} " == *" redis "* ]] && [[ $backend == all || $backend == redis ]] && services+=(redis)
[[ " ${needs[*]} " == *" rabbitmq "* ]] && [[ $backend == all || $backend == rabbitmq ]] && services+=(rabbitmq)
# Some scenarios use Redis (shared state, module output) and PostgreSQL (module output) whatever
# the backend.
services+=(redis)
[[ " ${names[*]} " == *" original-04-connector-advanced "* ]] && services+=(postgres)
if [ "${WC_SCEN_SERVICES:-local}" = local ]; then
  "$ROOT/scripts/services.sh" $(printf '%s\n' "${services[@]}" | sort -u) >&2 || exit 1
fi

failed=0
for name in "${names[@]}"; do
  for b in $(supported_backends "$name"); do
    [ "$backend" = all ] || [ "$backend" = "$b" ] || continue
    work=$(mktemp -d "${TMPDIR:-/tmp}/wcscen-$name-$b-XXXXXX")
    echo "== $name on $b (work directory $work)" >&2
    start=$SECONDS
    timeout --signal=TERM --kill-after=30 "$(time_limit "$name")" \
      bash "$SCEN/lib/scenario.sh" "$name" "$b" "$work"
    status=$?
    seconds=$((SECONDS - start))
    if [ -f "$work/result" ]; then
      counts=$(sed -n 1p "$work/result")
      verdict=$(sed -n 2p "$work/result")
      sed -n '3,$p' "$work/result" | sed 's/^/  reason: /' >&2
    else
      counts="sent=0 accepted=0 delivered=0 lost=0 duplicated=0"
      verdict=FAIL
      echo "  reason: the scenario ended without a result (status $status; time limit $(time_limit "$name")s)" >&2
    fi
    [ -f "$work/notes" ] && sed 's/^/  note: /' "$work/notes" >&2
    [ "$status" -eq 0 ] || [ "$verdict" = FAIL ] || { verdict=FAIL; echo "  reason: exit status $status" >&2; }
    echo "RESULT scenario=$name backend=$b $counts seconds=$seconds verdict=$verdict"
    if [ "$verdict" = FAIL ]; then
      failed=1
      echo "  logs kept in $work" >&2
    elif [ -z "${WC_KEEP_WORK:-}" ]; then
      rm -rf "$work"
    fi
  done
done
exit $failed
