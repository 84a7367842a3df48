#!/usr/bin/env bash
# The quickstart: builds the binaries, then starts on this machine
#   - a relay on the embedded store (no broker needed),
#   - a small local HTTP target (webhook-connect-sink) standing for your application,
#   - a connector that streams from the relay to the target,
# sends one sample webhook to the relay and shows it arriving at the target. Stops everything
# on exit. Ports: RELAY_PORT (default 18080) and TARGET_PORT (default 19090).
set -euo pipefail
cd "$(dirname "$0")/.."

RELAY_PORT=${RELAY_PORT:-18080}
TARGET_PORT=${TARGET_PORT:-19090}
command -v curl >/dev/null || { echo "quickstart: curl is needed to send the sample webhook" >&2; exit 1; }

echo "== Building (first build takes a few minutes)"
cargo build -j"${CARGO_BUILD_JOBS:-2}" -q -p webhook-relay -p webhook-connector -p webhook-connect-tests --bins
bin="${CARGO_TARGET_DIR:-target}/debug"

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

channel_token="quickstart-channel-token-$(date +%s)"
cat > "$work/relay.toml" <<TOML
[server]
listen = "127.0.0.1:$RELAY_PORT"

[buffer.embedded]
path = "$work/relay.db"

[state]
path = "$work/state.json"

[[channels]]
name = "demo"
token = "$channel_token"

# The sender (here: curl) must present this bearer token.
[channels.webhooks.github]
authorization = "Bearer demo-sender-secret"
TOML

cat > "$work/connector.json" <<JSON
{
  "cloud_url": "http://127.0.0.1:$RELAY_PORT",
  "channel": "demo",
  "token": "$channel_token",
  "protocol": "websocket",
  "default_target": {"url": "http://127.0.0.1:$TARGET_PORT/webhooks"}
}
JSON

wait_for() { # what, command...
  local what=$1; shift
  for _ in $(seq 1 100); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "quickstart: $what did not come up; logs are below" >&2
  tail -n 20 "$work"/*.log >&2
  exit 1
}

echo "== Starting the local target on 127.0.0.1:$TARGET_PORT"
"$bin/webhook-connect-sink" "127.0.0.1:$TARGET_PORT" > "$work/target.log" 2>&1 &
pids+=($!)
echo "== Starting the relay on 127.0.0.1:$RELAY_PORT (embedded store in $work)"
"$bin/webhook-relay" --config "$work/relay.toml" > "$work/relay.log" 2>&1 &
pids+=($!)
wait_for "the relay" curl -fs "http://127.0.0.1:$RELAY_PORT/readyz"
echo "== Starting the connector"
"$bin/webhook-connector" --config "$work/connector.json" > "$work/connector.log" 2>&1 &
pids+=($!)
wait_for "the connector" sh -c "curl -fs -H 'Authorization: Bearer $channel_token' http://127.0.0.1:$RELAY_PORT/connect/status/demo | grep -q '\"connected\":true'"

echo "== Sending a sample webhook to the relay"
curl -s -X POST "http://127.0.0.1:$RELAY_PORT/webhook/github" \
  -H 'Authorization: Bearer demo-sender-secret' \
  -H 'Content-Type: application/json' \
  -H 'X-GitHub-Event: push' \
  -d '{"ref": "refs/heads/main", "commits": [{"id": "0d1a26e6", "message": "Hello from Webhook Connect"}]}'
echo

wait_for "the delivery" grep -q "Hello from Webhook Connect" "$work/target.log"
echo "== The local target received:"
cat "$work/target.log"
echo "== Relay status of channel demo:"
curl -s -H "Authorization: Bearer $channel_token" "http://127.0.0.1:$RELAY_PORT/connect/status/demo"
echo
cat <<TEXT

The webhook went: curl -> relay (stored durably) -> connector (outbound WebSocket) -> local target,
and was acknowledged only after the target answered 2xx.

For real use:
  - run webhook-relay on a public host behind TLS, with your channels in its config
    (docs/configuration.md) and senders' real authentication (e.g. hmac = { preset = "github", ... });
  - run webhook-connector inside your network with cloud_url pointing at the relay and
    default_target / targets pointing at your applications;
  - keep tokens in files or environment variables ({\$VAR} substitution), never in command lines.
TEXT
