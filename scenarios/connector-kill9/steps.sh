# connector-kill9: see README.md. Sourced by scenarios/lib/scenario.sh.
BACKENDS="embedded redis rabbitmq"
TIME_LIMIT=480
KILLS=2

steps() {
  local rp tp
  start_stack --delay-ms 20 || return
  send_bg w 3000 200 "http://127.0.0.1:$rp/webhook/orders"
  for _ in $(seq 1 $KILLS); do
    sleep 5
    wait_accepted 300
    say "kill -9 of the connector (delivered so far: $(tally_get delivered))"
    kill9 connector
    sleep 1
    start_connector connector "$HERE/connector.json" "$rp"
  done
  send_wait w
  ALLOWED_DUPLICATES=$((KILLS * 50))
  wait_delivered 120 "$rp" orders
}
