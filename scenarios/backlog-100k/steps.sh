# backlog-100k: see README.md. Sourced by scenarios/lib/scenario.sh.
BACKENDS="embedded redis rabbitmq"
TIME_LIMIT=3000
COUNT=${WC_BACKLOG_COUNT:-100000}

steps() {
  use_backend || return
  local rp tp t0 t1 queued rss
  rp=$(free_port) tp=$(free_port)
  export TARGET_URL="http://127.0.0.1:$tp/hook"
  start_target target "$tp" || return
  start_relay relay "$HERE/relay.toml" "$rp" || return
  t0=$SECONDS
  send w "$COUNT" 0 "http://127.0.0.1:$rp/webhook/orders" -- --concurrency 16
  t1=$SECONDS
  queued=$(channel_stat "$rp" orders messages_queued)
  note "ingest: $COUNT webhooks in $((t1 - t0)) s ($(( COUNT / (t1 - t0 > 0 ? t1 - t0 : 1) ))/s), queued at the relay: $queued"
  check "every accepted webhook is queued (queued $queued)" [ "$queued" = "$(wc -l <"$WORK/accepted")" ]
  t0=$SECONDS
  start_connector connector "$HERE/connector.json" "$rp"
  wait_delivered 900 "$rp" orders
  t1=$((SECONDS - 2))
  rss=$(awk '/VmHWM/ {print int($2 / 1024)}' "/proc/${PIDS[relay]}/status")
  note "drain: $queued webhooks in $((t1 - t0)) s ($(( queued / (t1 - t0 > 0 ? t1 - t0 : 1) ))/s) by one connector; relay peak RSS ${rss} MiB"
}
