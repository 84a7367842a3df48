# relay-kill9: see README.md. Sourced by scenarios/lib/scenario.sh.
BACKENDS="embedded redis rabbitmq"
TIME_LIMIT=600
KILLS=2

steps() {
  local rp tp
  start_stack --delay-ms 5 || return
  send_bg w 4000 200 "http://127.0.0.1:$rp/webhook/orders"
  sleep 5
  for i in $(seq 1 $KILLS); do
    wait_accepted $((i * 500))
    say "kill -9 of the relay (accepted so far: $(wc -l <"$WORK/accepted"))"
    kill9 relay
    sleep 1
    start_relay relay "$HERE/relay.toml" "$rp" || return
    sleep 6
  done
  send_wait w
  ALLOWED_DUPLICATES=$((KILLS * 50))
  wait_delivered 120 "$rp" orders
}
