# target-outage: see README.md. Sourced by scenarios/lib/scenario.sh.
BACKENDS="embedded redis rabbitmq"
TIME_LIMIT=600

steps() {
  local rp tp dead
  start_stack || return
  send_bg w 2000 50 "http://127.0.0.1:$rp/webhook/orders"
  sleep 3
  wait_accepted 100
  say "target answers 503 for 30 s"
  target_set "$tp" '{"status": 503}'
  sleep 30
  target_set "$tp" '{"status": 200}'
  say "target answers 200 again"
  send_wait w
  wait_delivered 120 "$rp" orders
  dead=$(channel_stat "$rp" orders dead_letters_queued)
  check "no dead letters (got $dead)" [ "$dead" = 0 ]
}
