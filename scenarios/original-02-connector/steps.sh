# original-02-connector: see README.md. Sourced by scenarios/lib/scenario.sh.
BACKENDS="embedded redis rabbitmq"
TIME_LIMIT=400

start_processor() {
  start_target processor "$tp" --processor-config "$HERE/local/webhooks.json" --save-base "$WORK/local"
}

steps() {
  use_backend || return
  local rp tp url
  rp=$(free_port) tp=$(free_port)
  export WEBHOOKS_CONFIG_FILE="$HERE/cloud/webhooks.json" WEBHOOK_CONNECT_ADMIN_TOKEN=$ADMIN_TOKEN
  export PROCESSOR_URL="http://127.0.0.1:$tp/webhook/test-webhook"
  url="http://127.0.0.1:$rp/webhook/test-webhook"
  start_relay relay "$HERE/cloud/relay.toml" "$rp" || return
  say "one webhook before any connector exists"
  send first 1 0 "$url"
  check "the first webhook waits at the relay" [ "$(channel_stat "$rp" test-channel messages_queued)" = 1 ]
  start_processor || return
  start_connector connector "$HERE/local/connector.json" "$rp"
  wait_until "connector connected" 30 connected "$rp" test-channel || return
  send more 20 20 "$url"
  wait_delivered 60 "$rp" test-channel
  check "the first webhook is on disk" accepted_on_disk "$WORK/local/received" first
  check "the later webhooks are on disk" accepted_on_disk "$WORK/local/received" more

  say "resilience: the local processor is down while webhooks arrive"
  stop_proc processor
  send down 20 20 "$url"
  sleep 3
  check "nothing delivered while the processor is down" none_delivered down
  note "waiting at the relay while the processor is down: queued $(channel_stat "$rp" test-channel messages_queued), in flight $(channel_stat "$rp" test-channel messages_in_flight)"
  start_processor || return
  wait_delivered 90 "$rp" test-channel
  check "the webhooks of the outage are on disk" accepted_on_disk "$WORK/local/received" down
}
