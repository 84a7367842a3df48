# dead-letter-replay: see README.md. Sourced by scenarios/lib/scenario.sh.
BACKENDS="embedded redis rabbitmq"
TIME_LIMIT=400
COUNT=300

dead_letters_are() { [ "$(channel_stat "$1" orders dead_letters_queued)" = "$2" ]; }

steps() {
  use_backend || return
  local rp tp accepted answer
  rp=$(free_port) tp=$(free_port)
  export TARGET_URL="http://127.0.0.1:$tp/hook"
  start_target target "$tp" --status 422 || return
  start_relay relay "$HERE/relay.toml" "$rp" || return
  start_connector connector "$HERE/connector.json" "$rp"
  wait_until "connector connected" 30 connected "$rp" orders || return
  send w $COUNT 100 "http://127.0.0.1:$rp/webhook/orders"
  accepted=$(wc -l <"$WORK/accepted")
  wait_until "every accepted webhook dead-lettered" 60 dead_letters_are "$rp" "$accepted"
  check "nothing delivered before the replay" [ "$(tally_get delivered)" = 0 ]
  target_set "$tp" '{"status": 200}'
  answer=$(admin "$rp" POST /channels/orders/dead-letters/replay '{"limit": 10000}')
  note "replay answered: $answer"
  check "replay replayed all $accepted" grep -q "\"replayed\":$accepted\b" <<<"$answer"
  wait_delivered 120 "$rp" orders
  check "dead-letter queue empty after the replay" dead_letters_are "$rp" 0
}
