# original-04-connector-advanced: see README.md. Sourced by scenarios/lib/scenario.sh.
BACKENDS="embedded redis rabbitmq"
TIME_LIMIT=600

status_of() { # expected status, method, url [token]: fails unless the answer has that status
  local got
  got=$(curl -s -o /dev/null -w '%{http_code}' -X "$2" ${4:+-H "Authorization: Bearer $4"} "$3")
  [ "$got" = "$1" ] || { say "$2 $3 answered $got, expected $1"; return 1; }
}
only_webhook_at() { # target name, webhook id: every 2xx arrival at the target is of that webhook id
  ! awk '$2 ~ /^2/ {print $3}' "$WORK/arrivals-$1.log" | grep -v -x -e "$2" -e "${3:-$2}" | grep -q .
}
channel_idle() { relay_settled "$rp" "$1" "$2"; }

steps() {
  use_backend || return
  local tp1 tp2 a base new codes names
  rp=$(free_port) tp1=$(free_port) tp2=$(free_port)
  export ALPHA_TOKEN="alpha-$CHANNEL_TOKEN" BETA_TOKEN="beta-$CHANNEL_TOKEN" GAMMA_TOKEN="gamma-$CHANNEL_TOKEN"
  export OVERFLOW_TOKEN="overflow-$CHANNEL_TOKEN" MODULES_TOKEN="modules-$CHANNEL_TOKEN"
  export WEBHOOKS_CONFIG_FILE="$HERE/cloud/webhooks.json" WEBHOOK_CONNECT_ADMIN_TOKEN=$ADMIN_TOKEN
  export PROCESSOR1_URL="http://127.0.0.1:$tp1/process" PROCESSOR2_URL="http://127.0.0.1:$tp2/process"
  base="http://127.0.0.1:$rp"
  a="$base/admin/webhook-connect"
  start_target p1 "$tp1" || return
  start_target p2 "$tp2" || return
  start_relay relay "$HERE/cloud/relay.toml" "$rp" || return
  start_connector alpha "$HERE/local/connector-alpha.json" "$rp"
  start_connector beta "$HERE/local/connector-beta.json" "$rp"
  wait_until "WebSocket connector on alpha" 30 connected "$rp" alpha "$ALPHA_TOKEN" || return
  wait_until "SSE connector on beta" 30 connected "$rp" beta "$BETA_TOKEN" || return

  say "admin API"
  check "health without a token" status_of 200 GET "$a/health"
  check "channel list" status_of 200 GET "$a/channels" "$ADMIN_TOKEN"
  check "channel details" status_of 200 GET "$a/channels/alpha" "$ADMIN_TOKEN"
  check "channel stats" status_of 200 GET "$a/channels/alpha/stats" "$ADMIN_TOKEN"
  check "dead letters" status_of 200 GET "$a/channels/alpha/dead-letters" "$ADMIN_TOKEN"
  check "overview" status_of 200 GET "$a/overview" "$ADMIN_TOKEN"
  check "a wrong admin token is refused" status_of 401 GET "$a/channels" "wrong-$ADMIN_TOKEN"
  names=$(admin "$rp" GET /channels | python3 -c 'import json,sys; print(" ".join(c["name"] for c in json.load(sys.stdin)))')
  check "channel list names all five channels (got: $names)" [ "$names" = "alpha beta gamma modules overflow" ]

  say "target routing per webhook id (WebSocket) and SSE delivery"
  send ao 10 0 "$base/webhook/alpha-orders"
  send ae 10 0 "$base/webhook/alpha-events"
  send b 10 0 "$base/webhook/beta-webhook"
  wait_until "alpha delivered" 30 channel_idle alpha "$ALPHA_TOKEN"
  wait_until "beta delivered" 30 channel_idle beta "$BETA_TOKEN"
  check "processor 1 got only alpha-orders" only_webhook_at p1 alpha-orders
  check "processor 2 got only alpha-events and beta-webhook" only_webhook_at p2 alpha-events beta-webhook

  say "long-poll: 204 when empty, 200 with messages, acks"
  check "empty poll answers 204" [ "$(python3 "$HERE/poll_once.py" "$base" gamma "$GAMMA_TOKEN" 1 "$WORK/arrivals-poll.log")" = 204 ]
  send g 2 0 "$base/webhook/poll-webhook"
  check "poll with messages answers 200" [ "$(python3 "$HERE/poll_once.py" "$base" gamma "$GAMMA_TOKEN" 5 "$WORK/arrivals-poll.log")" = 200 ]
  wait_until "gamma empty after the acks" 10 channel_idle gamma "$GAMMA_TOKEN"

  say "token rotation with a grace period (beta)"
  new=$(curl -fs -X POST -H "Authorization: Bearer $ADMIN_TOKEN" -H 'Content-Type: application/json' \
    -d '{"grace_period_seconds": 3600}' "$a/channels/beta/rotate-token" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["new_token"])')
  check "old token works during the grace period" status_of 200 GET "$base/connect/status/beta" "$BETA_TOKEN"
  check "new token works" status_of 200 GET "$base/connect/status/beta" "$new"
  check "a wrong token is refused" status_of 401 GET "$base/connect/status/beta" "wrong-$new"
  send b2 5 0 "$base/webhook/beta-webhook"

  say "queue overflow at max_queue_size 3: refused, nothing dropped"
  send ov 5 0 "$base/webhook/overflow-webhook" -- --concurrency 1
  codes=$(python3 -c "import json; print(json.load(open('$WORK/stats-ov.json'))['codes'])")
  check "3 accepted and 2 refused with 429 (got $codes)" [ "$codes" = "{'200': 3, '429': 2}" ]
  start_connector overflow "$HERE/local/connector-overflow.json" "$rp"
  wait_until "the 3 queued overflow webhooks delivered" 30 channel_idle overflow "$OVERFLOW_TOKEN"

  say "retry delivery: processor 2 down while beta webhooks arrive"
  stop_proc p2
  send br 5 0 "$base/webhook/beta-webhook"
  sleep 3
  check "nothing delivered while processor 2 is down" none_delivered br
  start_target p2 "$tp2" || return
  wait_until "beta delivered after processor 2 is back" 60 channel_idle beta "$BETA_TOKEN"

  say "module mode: save_to_disk, PostgreSQL and Redis, read back"
  module_mode
  wait_delivered 60 "$rp" alpha "$ALPHA_TOKEN"
}

module_mode() {
  export MODULE_OUT="$WORK/modules" PG_URL=${WC_SCEN_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
  export PG_TABLE="wcscen_$RUN_ID" RQ_QUEUE="wcscen_$RUN_ID:jobs" REDIS_URL
  CLEANUPS+=("psql '$PG_URL' -qc 'DROP TABLE IF EXISTS \"$PG_TABLE\"'" "redis-cli -u '$REDIS_URL' del '$RQ_QUEUE'")
  mkdir -p "$MODULE_OUT"
  start_connector modules "$HERE/local/connector-modules.json" "$rp"
  wait_until "module-mode connector on modules" 30 connected "$rp" modules "$MODULES_TOKEN" || return
  send m 5 0 "$base/webhook/module-webhook"
  wait_until "modules channel acked everything" 30 channel_idle modules "$MODULES_TOKEN"
  python3 - "$WORK" "$PG_URL" "$PG_TABLE" "$REDIS_URL" "$RQ_QUEUE" <<'PY'
import json, os, subprocess, sys
work, pg, table, redis, queue = sys.argv[1:]
sent = {l.strip() for l in open(os.path.join(work, "accepted")) if l.startswith("m-")}
files = set()
for name in os.listdir(os.path.join(work, "modules", "files")):
    doc = json.load(open(os.path.join(work, "modules", "files", name)))
    files.add(doc.get("sid") or doc.get("payload", {}).get("sid"))
rows = set(subprocess.run(["psql", pg, "-Atc", f"SELECT payload->>'sid' FROM \"{table}\""],
                          capture_output=True, text=True).stdout.split())
jobs = subprocess.run(["redis-cli", "-u", redis, "lrange", queue, "0", "-1"],
                      capture_output=True, text=True).stdout.splitlines()
rq = {json.loads(j)["args"][0]["sid"] for j in jobs if j.strip()}
print(f"  module mode: {len(sent)} accepted; save_to_disk {len(files & sent)}, PostgreSQL "
      f"{len(rows & sent)}, Redis {len(rq & sent)}", file=sys.stderr)
# A webhook counts as delivered when all three systems hold it.
with open(os.path.join(work, "arrivals-modules.log"), "a") as out:
    for sid in sorted(sent & files & rows & rq):
        out.write(f"{sid} 200 module-webhook - 1\n")
PY
  [ $? = 0 ] || fail "module mode: reading back the outputs failed"
}
