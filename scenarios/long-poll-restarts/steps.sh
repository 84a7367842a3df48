# long-poll-restarts: see README.md. Sourced by scenarios/lib/scenario.sh.
BACKENDS="embedded redis rabbitmq"
TIME_LIMIT=600

steps() {
  local rp tp i
  start_stack --delay-ms 10 || return
  send_bg w 3000 100 "http://127.0.0.1:$rp/webhook/orders"
  for i in 1 2 3 4; do
    sleep 5
    wait_accepted $((i * 300))
    if [ $((i % 2)) = 1 ]; then
      say "SIGTERM to the long-poll connector"
      stop_proc connector TERM 20
      check "connector exit status 0 after SIGTERM (got $LAST_STATUS)" [ "$LAST_STATUS" = 0 ]
    else
      say "kill -9 of the long-poll connector"
      kill9 connector
    fi
    start_connector connector "$HERE/connector.json" "$rp"
  done
  send_wait w
  ALLOWED_DUPLICATES=100
  wait_delivered 120 "$rp" orders
}
