#!/usr/bin/env bash
# Runs one scenario on one backend: scenarios/lib/scenario.sh NAME BACKEND WORKDIR
# Called by scenarios/run.sh, which prints the RESULT line from WORKDIR/result. The scenario's
# steps.sh defines `steps`; everything it starts is stopped here on exit, whatever happened.
set -uo pipefail
SCENARIO=$1
BACKEND=$2
WORK=$3
HERE=$(cd "$(dirname "$0")/../$SCENARIO" && pwd)
export SCENARIO_DIR=$HERE
RUN_ID="$(date +%s)$$"
# shellcheck source=common.sh
source "$(dirname "$0")/common.sh"
trap cleanup EXIT
trap 'fail "interrupted (time limit or signal)"; finish; exit 143' TERM INT
# shellcheck disable=SC1091
source "$HERE/steps.sh"
steps
finish
