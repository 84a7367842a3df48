# dead-letter-replay: see README.md. Sourced by scenarios/lib/scenario.sh.
BACKENDS="embedded redis rabbitmq"
TIME_LIMIT=400
COUNT=300

dead_letters_are() { [ "$(channel_stat "$1" orders dead_letters_queued)" = "$2" ]; }

steps() {
  local rp tp accepted answer
  start_stack --status 422 || return
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
