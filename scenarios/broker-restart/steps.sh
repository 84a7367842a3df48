# broker-restart: see README.md. Sourced by scenarios/lib/scenario.sh.
BACKENDS="redis rabbitmq"
TIME_LIMIT=720

start_broker() {
  case "$BACKEND" in
    redis) start_private_redis "$bp" ;;
    rabbitmq) start_private_rabbitmq "$bp" "$dp" ;;
  esac
}
kill_broker() {
  case "$BACKEND" in
    redis) kill9 broker-redis ;;
    rabbitmq) kill9_private_rabbitmq ;;
  esac
}

steps() {
  local rp tp bp dp url codes back
  rp=$(free_port) tp=$(free_port) bp=$(free_port) dp=$(free_port)
  start_broker || { fail "cannot start a private $BACKEND broker"; return; }
  case "$BACKEND" in
    redis) url="redis://127.0.0.1:$bp/0" ;;
    rabbitmq) url="amqp://guest:guest@127.0.0.1:$bp/%2f" ;;
  esac
  use_backend "$url" || return
  export TARGET_URL="http://127.0.0.1:$tp/hook"
  start_target target "$tp" --delay-ms 5 || return
  start_relay relay "$HERE/relay.toml" "$rp" || return
  start_connector connector "$HERE/connector.json" "$rp"
  wait_until "connector connected" 30 connected "$rp" orders || return
  send_bg before 1500 150 "http://127.0.0.1:$rp/webhook/orders" -- --concurrency 8
  sleep 5
  wait_accepted 300
  say "kill -9 of the private $BACKEND broker"
  kill_broker
  sleep 2
  send probe 5 2 "http://127.0.0.1:$rp/webhook/orders" -- --concurrency 1
  codes=$(python3 -c "import json; print(json.load(open('$WORK/stats-probe.json'))['codes'])")
  note "ingest answers while the broker is down: $codes"
  check "ingest answers 503 while the broker is down (got $codes)" \
    python3 -c "import json,sys; c=json.load(open('$WORK/stats-probe.json'))['codes']; sys.exit(0 if set(c) == {'503'} else 1)"
  sleep 6
  say "starting the broker again"
  back=$SECONDS
  start_broker || { fail "the private $BACKEND broker did not come back"; return; }
  wait_until "relay ready again after the broker restart" 90 curl -fs "http://127.0.0.1:$rp/readyz" || return
  note "relay ready again $((SECONDS - back)) s after the broker was started again"
  send_wait before
  send after 500 100 "http://127.0.0.1:$rp/webhook/orders"
  check "every webhook sent after the recovery accepted" \
    python3 -c "import json,sys; c=json.load(open('$WORK/stats-after.json'))['codes']; sys.exit(0 if c == {'200': 500} else 1)"
  ALLOWED_DUPLICATES=50
  wait_delivered 180 "$rp" orders
}
