# ordered-redelivery: see README.md. Sourced by scenarios/lib/scenario.sh.
BACKENDS="embedded redis rabbitmq"
TIME_LIMIT=480

steps() {
  local rp tp breaks
  start_stack --fail-first-every 7 || return
  send w 600 40 "http://127.0.0.1:$rp/webhook/orders" -- --concurrency 1
  wait_delivered 180 "$rp" orders
  breaks=$(tally_get order_breaks)
  note "failed first deliveries: $(grep -c ' 500 ' "$WORK/arrivals-target.log"); order breaks: $breaks"
  check "arrival order equals send order ($breaks out of order)" [ "$breaks" = 0 ]
}
