# token-rotation: see README.md. Sourced by scenarios/lib/scenario.sh.
BACKENDS="embedded redis rabbitmq"
TIME_LIMIT=480

status_code() { # relay port, token
  curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $2" \
    "http://127.0.0.1:$1/connect/status/orders"
}
connection_ids() { # relay port
  admin "$1" GET /channels/orders \
    | python3 -c 'import json,sys; print(" ".join(sorted(c["connection_id"] for c in json.load(sys.stdin)["connected_clients"])))'
}

steps() {
  local rp tp new before after
  export TOKEN_FILE="$WORK/channel-token"
  echo "$CHANNEL_TOKEN" >"$TOKEN_FILE"
  start_stack --delay-ms 5 || return
  send_bg w 2500 100 "http://127.0.0.1:$rp/webhook/orders"
  sleep 5
  wait_accepted 300
  before=$(connection_ids "$rp")
  new=$(admin "$rp" POST /channels/orders/rotate-token '{"grace_period_seconds": 8}' \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["new_token"])') \
    || { fail "rotate-token failed"; return; }
  echo "$new" >"$TOKEN_FILE.tmp" && mv "$TOKEN_FILE.tmp" "$TOKEN_FILE"
  say "token rotated with 8 s of grace; the new token is in the connector's token_file"
  check "old token works during the grace period" [ "$(status_code "$rp" "$CHANNEL_TOKEN")" = 200 ]
  check "new token works" [ "$(status_code "$rp" "$new")" = 200 ]
  check "a wrong token is refused" [ "$(status_code "$rp" "wrong-$new")" = 401 ]
  sleep 10
  check "old token refused after the grace period" [ "$(status_code "$rp" "$CHANNEL_TOKEN")" = 401 ]
  CHANNEL_TOKEN=$new wait_until "connector reconnected with the new token" 30 connected "$rp" orders "$new"
  after=$(connection_ids "$rp")
  note "connections before the rotation: $before; after the grace period: $after"
  check "the connector moved to a new connection" test -n "$after" -a "$before" != "$after"
  send_wait w
  ALLOWED_DUPLICATES=50
  CHANNEL_TOKEN=$new wait_delivered 120 "$rp" orders
}
