# connector-offline: see README.md. Sourced by scenarios/lib/scenario.sh.
BACKENDS="embedded redis rabbitmq"
TIME_LIMIT=600

steps() {
  local rp tp
  start_stack --delay-ms 10 || return
  send_bg w 2500 50 "http://127.0.0.1:$rp/webhook/orders"
  sleep 5
  wait_accepted 200
  say "connector frozen (SIGSTOP) for 25 s"
  kill -STOP "${PIDS[connector]}"
  sleep 22
  check "the relay evicted the silent connection" bash -c "! curl -fs -H 'Authorization: Bearer $CHANNEL_TOKEN' http://127.0.0.1:$rp/connect/status/orders | grep -q '\"connected\":true'"
  note "22 s into the absence: queued $(channel_stat "$rp" orders messages_queued), in flight $(channel_stat "$rp" orders messages_in_flight) (leases of the evicted connection not yet returned count here)"
  sleep 3
  kill -CONT "${PIDS[connector]}"
  say "connector continues (SIGCONT)"
  wait_until "connector reconnected" 60 connected "$rp" orders
  send_wait w
  ALLOWED_DUPLICATES=50
  wait_delivered 120 "$rp" orders
}
