# pause-resume: see README.md. Sourced by scenarios/lib/scenario.sh.
BACKENDS="embedded redis rabbitmq"
TIME_LIMIT=400

steps() {
  local rp tp during_a during_b queued answer
  start_stack --delay-ms 5 || return
  send_bg w 2000 100 "http://127.0.0.1:$rp/webhook/orders"
  sleep 4
  wait_accepted 300
  answer=$(admin "$rp" POST /channels/orders/pause)
  check "pause answered ($answer)" grep -q '"paused":true' <<<"$answer"
  sleep 2 # deliveries leased before the pause finish
  during_a=$(tally_get delivered)
  sleep 6
  during_b=$(tally_get delivered)
  queued=$(channel_stat "$rp" orders messages_queued)
  note "paused: delivered stayed $during_a -> $during_b over 6 s, queued $queued"
  check "nothing delivered while paused ($during_a -> $during_b)" [ "$during_a" = "$during_b" ]
  check "webhooks queue up while paused (queued $queued)" [ "$queued" -gt 0 ]
  answer=$(admin "$rp" POST /channels/orders/resume)
  check "resume answered ($answer)" grep -q '"paused":false' <<<"$answer"
  send_wait w
  wait_delivered 120 "$rp" orders
}
