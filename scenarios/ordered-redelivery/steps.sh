# ordered-redelivery: see README.md. Sourced by scenarios/lib/scenario.sh.
BACKENDS="embedded redis rabbitmq"
TIME_LIMIT=480

steps() {
  use_backend || return
  local rp tp breaks
  rp=$(free_port) tp=$(free_port)
  export TARGET_URL="http://127.0.0.1:$tp/hook"
  start_target target "$tp" --fail-first-every 7 || return
  start_relay relay "$HERE/relay.toml" "$rp" || return
  start_connector connector "$HERE/connector.json" "$rp"
  wait_until "connector connected" 30 connected "$rp" orders || return
  send w 600 40 "http://127.0.0.1:$rp/webhook/orders" -- --concurrency 1
  wait_delivered 180 "$rp" orders
  breaks=$(tally_get order_breaks)
  note "failed first deliveries: $(grep -c ' 500 ' "$WORK/arrivals-target.log"); order breaks: $breaks"
  check "arrival order equals send order ($breaks out of order)" [ "$breaks" = 0 ]
}
