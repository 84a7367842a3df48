# two-relays-one-killed: see README.md. Sourced by scenarios/lib/scenario.sh.
BACKENDS="redis rabbitmq"
TIME_LIMIT=600

client_count() { # relay port
  admin "$1" GET /channels/orders \
    | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["connected_clients"]))'
}
clients_are() { [ "$(client_count "$1")" = "$2" ]; }
# Each relay holds one connector. (Checked on each relay: admin reads of connections are meant to
# aggregate across instances, docs/reference/http-api.md §7, and do not in the current code.)
one_each() { [ "$(client_count "$1")" -ge 1 ] && [ "$(client_count "$2")" -ge 1 ]; }

steps() {
  use_backend || return
  use_shared_state
  local pa pb l1 l2 tp
  pa=$(free_port) pb=$(free_port) l1=$(free_port) l2=$(free_port) tp=$(free_port)
  export TARGET_URL="http://127.0.0.1:$tp/hook"
  start_target target "$tp" --delay-ms 5 || return
  start_relay relay-a "$HERE/relay.toml" "$pa" || return
  start_relay relay-b "$HERE/relay.toml" "$pb" || return
  start_proc lb1 python3 "$LIB/balancer.py" --port "$l1" --upstream "127.0.0.1:$pa" --upstream "127.0.0.1:$pb"
  start_proc lb2 python3 "$LIB/balancer.py" --port "$l2" --upstream "127.0.0.1:$pb" --upstream "127.0.0.1:$pa"
  sleep 0.5
  start_connector c1 "$HERE/connector.json" "$l1"
  start_connector c2 "$HERE/connector.json" "$l2"
  wait_until "one connector on each relay" 30 one_each "$pa" "$pb" || return
  note "connections seen by relay A: $(client_count "$pa"), by relay B: $(client_count "$pb") (both connectors connected)"
  send_bg w 3000 150 "http://127.0.0.1:$pa/webhook/orders" "http://127.0.0.1:$pb/webhook/orders"
  sleep 6
  wait_accepted 400
  say "kill -9 of relay A (accepted so far: $(wc -l <"$WORK/accepted"))"
  kill9 relay-a
  sleep 3
  note "connections registered 3 s after relay A died: $(client_count "$pb")"
  wait_until "exactly the two connectors registered, both through relay B" 60 clients_are "$pb" 2
  send_wait w
  ALLOWED_DUPLICATES=50
  wait_delivered 120 "$pb" orders
}
