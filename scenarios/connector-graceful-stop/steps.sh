# connector-graceful-stop: see README.md. Sourced by scenarios/lib/scenario.sh.
BACKENDS="embedded redis rabbitmq"
TIME_LIMIT=480

steps() {
  local rp tp in_flight
  start_stack --delay-ms 1500 || return
  send_bg w 300 50 "http://127.0.0.1:$rp/webhook/orders"
  sleep 4
  wait_accepted 50
  say "SIGTERM to the connector (deliveries in flight: $(channel_stat "$rp" orders messages_in_flight))"
  stop_proc connector TERM 40
  check "connector exit status 0 after SIGTERM (got $LAST_STATUS)" [ "$LAST_STATUS" = 0 ]
  sleep 1
  in_flight=$(channel_stat "$rp" orders messages_in_flight)
  note "in flight at the relay 1 s after the connector exited: $in_flight"
  check "nothing in flight at the relay after the graceful stop (got $in_flight)" [ "$in_flight" = 0 ]
  target_set "$tp" '{"delay_ms": 0}'
  start_connector connector "$HERE/connector.json" "$rp"
  send_wait w
  wait_delivered 120 "$rp" orders
}
