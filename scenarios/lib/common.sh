# Shared plumbing of every scenario; sourced by scenarios/lib/scenario.sh, never run alone.
# A scenario's steps.sh uses these functions; everything started through them is stopped by
# `cleanup` (installed as the EXIT trap by scenario.sh), however the steps end.
#
# Variables set for the steps:
#   SCENARIO, BACKEND, HERE (the scenario's folder), WORK (a fresh directory for this run),
#   RUN_ID (unique per run), ADMIN_TOKEN, CHANNEL_TOKEN (exported: configs read them via {$VAR}).

LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RELAY_BIN=${WC_BIN_DIR:?}/webhook-relay
CONNECTOR_BIN=$WC_BIN_DIR/webhook-connector
NICE=${WC_NICE:-10}
declare -A PIDS=()
CLEANUPS=()
FAILURES=()
ALLOWED_DUPLICATES=0
export ADMIN_TOKEN="scenario-admin-token-$RUN_ID"
export CHANNEL_TOKEN="scenario-channel-token-$RUN_ID"

say() { echo "[$SCENARIO/$BACKEND] $*" >&2; }

# Marks the run as failed (the verdict becomes FAIL) and says why; the steps go on.
fail() { FAILURES+=("$*"); say "FAIL: $*"; }
# A measured figure worth keeping (run.sh prints it with the RESULT line).
note() { echo "$*" >>"$WORK/notes"; say "$*"; }
check() { # description, command...: fail with the description when the command fails
  local what=$1; shift
  "$@" || fail "$what"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# --- processes ------------------------------------------------------------------------------

start_proc() { # name, command... (output to $WORK/<name>.log, appended across restarts)
  local name=$1; shift
  echo "=== start $(date +%T.%N)" >>"$WORK/$name.log"
  nice -n "$NICE" "$@" >>"$WORK/$name.log" 2>&1 &
  PIDS[$name]=$!
}

is_running() { [ -n "${PIDS[$1]:-}" ] && kill -0 "${PIDS[$1]}" 2>/dev/null; }

stop_proc() { # name [signal] [seconds to wait before SIGKILL]
  local name=$1 sig=${2:-TERM} grace=${3:-15} pid=${PIDS[$1]:-}
  [ -n "$pid" ] || return 0
  kill -"$sig" "$pid" 2>/dev/null || true
  for _ in $(seq 1 $((grace * 10))); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "$name did not stop within ${grace}s of SIG$sig; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null
  local status=$?
  LAST_STATUS=$status
  unset "PIDS[$name]"
  echo "=== stopped $(date +%T.%N) status $status" >>"$WORK/$name.log"
  return 0
}

kill9() { stop_proc "$1" KILL 5; }

# The limits are multiplied by WC_WAIT_FACTOR (default 2), for slow or busy machines.
wait_until() { # description, seconds, command...
  local what=$1 limit=$(($2 * ${WC_WAIT_FACTOR:-2})); shift 2
  local deadline=$((SECONDS + limit))
  while ! "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      fail "$what: not within ${limit}s"
      return 1
    fi
    sleep 0.2
  done
}

cleanup() {
  local name
  for name in "${!PIDS[@]}"; do
    [ "${name#broker}" != "$name" ] && continue
    stop_proc "$name" TERM 10
  done
  for name in "${!PIDS[@]}"; do stop_proc "$name" TERM 10; done
  local action
  for action in "${CLEANUPS[@]}"; do eval "$action" >/dev/null 2>&1 || true; done
}

# --- brokers and relay environment ----------------------------------------------------------

REDIS_URL=${WC_SCEN_REDIS_URL:-redis://127.0.0.1:6379/0}
RABBITMQ_BASE=${WC_SCEN_RABBITMQ_URL:-amqp://guest:guest@127.0.0.1:5672}
RABBITMQ_USER=${WC_SCEN_RABBITMQ_USER:-guest}
KEY_PREFIX="wcscen_$RUN_ID"

redis_cli_for() { # redis URL -> redis-cli arguments
  python3 - "$1" <<'PY'
import sys, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1])
args = ["-h", u.hostname or "127.0.0.1", "-p", str(u.port or 6379), "-n", (u.path.strip("/") or "0")]
if u.password: args += ["-a", urllib.parse.unquote(u.password), "--no-auth-warning"]
print(" ".join(args))
PY
}

# Deletes this run's keys (its own prefix) from a shared Redis; never touches other keys.
redis_forget() { # redis URL
  local args
  args=$(redis_cli_for "$1")
  # shellcheck disable=SC2086
  redis-cli $args --scan --pattern "$KEY_PREFIX*" | xargs -r -n 500 redis-cli $args del >/dev/null
}

# A vhost of our own on the shared RabbitMQ, deleted at the end: through the management API when
# WC_SCEN_RABBITMQ_API (http://user:password@host:15672) is set, else with rabbitmqctl on this host.
rabbitmq_vhost() { # sets RABBITMQ_VHOST_URL (not in a subshell: the cleanup must be registered here)
  local vhost="wcscen-$RUN_ID" api=${WC_SCEN_RABBITMQ_API:-}
  if [ -n "$api" ]; then
    curl -fs -X PUT "$api/api/vhosts/$vhost" >/dev/null \
      && curl -fs -X PUT -H 'Content-Type: application/json' \
        -d '{"configure":".*","write":".*","read":".*"}' "$api/api/permissions/$vhost/$RABBITMQ_USER" >/dev/null \
      || return 1
    CLEANUPS+=("curl -fs -X DELETE '$api/api/vhosts/$vhost'")
  else
    rabbitmqctl -q add_vhost "$vhost" >/dev/null \
      && rabbitmqctl -q set_permissions -p "$vhost" "$RABBITMQ_USER" '.*' '.*' '.*' >/dev/null \
      || return 1
    CLEANUPS+=("rabbitmqctl -q delete_vhost '$vhost'")
  fi
  RABBITMQ_VHOST_URL="$RABBITMQ_BASE/$vhost"
}

# Exports the WEBHOOK_RELAY_* variables that put the relay's buffer (and state) on $BACKEND,
# isolated for this run. Call once before starting relays; with a URL it uses that broker.
use_backend() { # [broker url]
  export WEBHOOK_RELAY_BUFFER__BACKEND=$BACKEND
  case "$BACKEND" in
    embedded) ;;
    redis)
      export WEBHOOK_RELAY_BUFFER__REDIS__URL=${1:-$REDIS_URL}
      export WEBHOOK_RELAY_BUFFER__REDIS__KEY_PREFIX=$KEY_PREFIX
      export WEBHOOK_RELAY_STATE__KEY_PREFIX=$KEY_PREFIX
      CLEANUPS+=("redis_forget '${1:-$REDIS_URL}'") ;;
    rabbitmq)
      if [ -n "${1:-}" ]; then
        export WEBHOOK_RELAY_BUFFER__RABBITMQ__URL=$1
      else
        rabbitmq_vhost || { fail "cannot create a RabbitMQ vhost"; return 1; }
        export WEBHOOK_RELAY_BUFFER__RABBITMQ__URL=$RABBITMQ_VHOST_URL
      fi ;;
    *) fail "unknown backend $BACKEND"; return 1 ;;
  esac
}

# Several relays share the Redis state when they share a broker (two-relays scenarios).
use_shared_state() {
  export WEBHOOK_RELAY_STATE__BACKEND=redis
  export WEBHOOK_RELAY_STATE__REDIS_URL=$REDIS_URL
  export WEBHOOK_RELAY_STATE__KEY_PREFIX=$KEY_PREFIX
  CLEANUPS+=("redis_forget '$REDIS_URL'")
}

# --- relay, connector, target, sender -------------------------------------------------------

# Starts relay <name> with <config> on <port> (RELAY_LISTEN in the config); its embedded files
# are <name>.db / <name>-state.json in $WORK, so a restart of the same name finds its data.
start_relay() { # name, config, port [wait: yes|no]
  local name=$1 config=$2 port=$3
  start_proc "$name" env RELAY_LISTEN="127.0.0.1:$port" \
    WEBHOOK_RELAY_BUFFER__EMBEDDED__PATH="$WORK/$name.db" \
    WEBHOOK_RELAY_STATE__PATH="$WORK/$name-state.json" \
    "$RELAY_BIN" --config "$config"
  [ "${4:-yes}" = no ] || wait_until "relay $name ready" 60 curl -fs "http://127.0.0.1:$port/readyz"
}

start_connector() { # name, config, relay port [connector id]
  start_proc "$1" env CLOUD_URL="http://127.0.0.1:$3" CONNECTOR_ID="${4:-$1}" \
    "$CONNECTOR_BIN" --config "$2"
}

start_target() { # name, port, extra target.py flags...
  local name=$1 port=$2; shift 2
  start_proc "$name" python3 "$LIB/target.py" --port "$port" --arrivals "$WORK/arrivals-$name.log" "$@"
  wait_until "target $name up" 20 curl -fs "http://127.0.0.1:$port/_control"
}

target_set() { # port, JSON settings
  curl -fs -X POST -d "$2" "http://127.0.0.1:$1/_control" >/dev/null || fail "cannot change target on $1"
}

# Starts a load sender in the background (name: sender-<tag>); its sids are <tag>-<n>.
send_bg() { # tag, count, rate, url... [-- extra sender flags]
  local tag=$1 count=$2 rate=$3; shift 3
  local args=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do args+=(--url "$1"); shift; done
  [ "${1:-}" = -- ] && shift
  start_proc "sender-$tag" python3 "$LIB/sender.py" "${args[@]}" --count "$count" --rate "$rate" \
    --prefix "$tag" --accepted "$WORK/accepted" --stats "$WORK/stats-$tag.json" "$@"
}
send_wait() { # tag: waits for the sender to finish
  local pid=${PIDS[sender-$1]:-}
  [ -n "$pid" ] && wait "$pid"
  unset "PIDS[sender-$1]"
  tail -n 1 "$WORK/sender-$1.log" >&2
}
send() { send_bg "$@"; send_wait "$1"; }

# The relay's view of a channel (GET /connect/status with the channel token).
channel_stat() { # relay port, channel, stats key
  curl -fs -H "Authorization: Bearer ${4:-$CHANNEL_TOKEN}" "http://127.0.0.1:$1/connect/status/$2" \
    | python3 -c "import json,sys; print(json.load(sys.stdin)['stats']['$3'])"
}
connected() { # relay port, channel [token]
  curl -fs -H "Authorization: Bearer ${3:-$CHANNEL_TOKEN}" "http://127.0.0.1:$1/connect/status/$2" \
    | grep -q '"connected":true'
}
admin() { # relay port, method, path [body]
  curl -s -X "$2" -H "Authorization: Bearer $ADMIN_TOKEN" -H 'Content-Type: application/json' \
    ${4:+-d "$4"} "http://127.0.0.1:$1/admin/webhook-connect$3"
}

# The usual cast of a scenario: the backend, a counting target (with the given target.py flags),
# the relay of $HERE/relay.toml and the connector of $HERE/connector.json, connected to channel
# "orders". Sets rp (the relay's port) and tp (the target's port) for the steps.
start_stack() { # target.py flags...
  use_backend || return
  rp=$(free_port) tp=$(free_port)
  export TARGET_URL="http://127.0.0.1:$tp/hook"
  start_target target "$tp" "$@" || return
  start_relay relay "$HERE/relay.toml" "$rp" || return
  start_connector connector "$HERE/connector.json" "$rp"
  wait_until "connector connected" 30 connected "$rp" orders
}

# Waits until the senders have had at least N webhooks accepted in all, so that a fault injected
# next hits a stream that is really flowing, however slow the machine is.
accepted_at_least() { [ "$(wc -l <"$WORK/accepted" 2>/dev/null || echo 0)" -ge "$1" ]; }
wait_accepted() { wait_until "$1 webhooks accepted" 60 accepted_at_least "$1"; }

tally() { python3 "$LIB/tally.py" "$WORK" "$@"; }
tally_get() { tally | sed -n "s/^$1=//p"; }
everything_delivered() { [ "$(tally_get lost)" = 0 ]; }
relay_settled() { # relay port, channel [token]: nothing queued, nothing in flight
  [ "$(channel_stat "$1" "$2" messages_queued "${3:-}")" = 0 ] \
    && [ "$(channel_stat "$1" "$2" messages_in_flight "${3:-}")" = 0 ]
}
none_delivered() { # sid prefix: no target answered 2xx to a webhook of that prefix
  ! cat "$WORK"/arrivals-*.log 2>/dev/null | grep -q "^$1-[0-9]* 2"
}
# Waits until every accepted webhook arrived and the relay holds nothing, then a little longer so
# late duplicates are counted too.
wait_delivered() { # seconds, relay port, channel [channel token]
  wait_until "every accepted webhook delivered" "$1" everything_delivered || return 1
  wait_until "relay $2 settled" 30 relay_settled "$2" "$3" "${4:-}" || return 1
  sleep 2
}

# Writes the result of this run for run.sh; the verdict is PASS when nothing accepted was lost,
# duplicates stay within ALLOWED_DUPLICATES, something was accepted and no step failed.
finish() {
  local t
  t=$(tally --missing)
  echo "$t" | sed 's/^/  /' >&2
  local get
  get() { echo "$t" | sed -n "s/^$1=//p"; }
  [ "$(get accepted)" -gt 0 ] || fail "nothing was accepted"
  [ "$(get lost)" = 0 ] || fail "$(get lost) accepted webhooks never delivered: $(get missing)"
  [ "$(get duplicated)" -le "$ALLOWED_DUPLICATES" ] \
    || fail "$(get duplicated) duplicates, at most $ALLOWED_DUPLICATES allowed here"
  local verdict=PASS
  [ ${#FAILURES[@]} -eq 0 ] || verdict=FAIL
  {
    echo "sent=$(get sent) accepted=$(get accepted) delivered=$(get delivered) lost=$(get lost) duplicated=$(get duplicated)"
    echo "$verdict"
    [ ${#FAILURES[@]} -eq 0 ] || printf '%s\n' "${FAILURES[@]}"
  } >"$WORK/result"
}

# --- private brokers (broker-restart): our own processes on free ports, never the shared ones ---

# Redis with an append-only file fsynced on every write, so an XADD that was answered survives
# kill -9 of the server: that setting is what the Redis backend's durability rests on.
start_private_redis() { # port
  mkdir -p "$WORK/redis"
  start_proc broker-redis redis-server --port "$1" --bind 127.0.0.1 --save '' --appendonly yes \
    --appendfsync always --dir "$WORK/redis" --daemonize no
  wait_until "private Redis on $1 up" 20 redis-cli -p "$1" ping
}

# A second RabbitMQ node of its own (node name, ports, data directory), run as the rabbitmq user
# as the packaged server is. Its data directory survives restarts within the run.
RABBITMQ_DIR=
start_private_rabbitmq() { # amqp port, distribution port
  local node="wcscen$RUN_ID@localhost"
  if [ -z "$RABBITMQ_DIR" ]; then
    RABBITMQ_DIR=$(mktemp -d /tmp/wcscen-rabbitmq-XXXXXX)
    mkdir -p "$RABBITMQ_DIR/mnesia" "$RABBITMQ_DIR/log"
    echo '[].' >"$RABBITMQ_DIR/plugins"
    chown -R rabbitmq "$RABBITMQ_DIR" 2>/dev/null || true
    CLEANUPS+=("kill -9 \$(cat '$RABBITMQ_DIR/pid') ; rm -rf '$RABBITMQ_DIR'")
  fi
  start_proc broker-rabbitmq env RABBITMQ_NODENAME="$node" RABBITMQ_NODE_PORT="$1" \
    RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_DIST_PORT="$2" \
    RABBITMQ_MNESIA_BASE="$RABBITMQ_DIR/mnesia" RABBITMQ_LOG_BASE="$RABBITMQ_DIR/log" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$RABBITMQ_DIR/plugins" RABBITMQ_PID_FILE="$RABBITMQ_DIR/pid" \
    RABBITMQ_CONFIG_FILE="$RABBITMQ_DIR/none" RABBITMQ_ADVANCED_CONFIG_FILE="$RABBITMQ_DIR/none.config" \
    rabbitmq-server
  wait_until "private RabbitMQ node on $1 up" 90 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1"
}
kill9_private_rabbitmq() {
  kill -9 "$(cat "$RABBITMQ_DIR/pid")" 2>/dev/null
  stop_proc broker-rabbitmq TERM 20
}

# Checks that every accepted webhook (of one sid prefix) is a JSON file somewhere under <dir>:
# the webhook body itself, or a save_to_disk record holding it as "payload".
accepted_on_disk() { # dir, sid prefix
  python3 - "$WORK/accepted" "$1" "$2" <<'PY'
import json, os, sys
accepted = {l.strip() for l in open(sys.argv[1]) if l.startswith(sys.argv[3] + "-")}
found = set()
for root, _, files in os.walk(sys.argv[2]):
    for name in files:
        try:
            with open(os.path.join(root, name), encoding="utf-8") as f:
                doc = json.load(f)
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict):
            found.add(doc.get("sid") or (doc.get("payload") or {}).get("sid"))
missing = sorted(accepted - found)
print(f"  {sys.argv[3]}: {len(accepted)} accepted, {len(accepted & found)} on disk, missing: {missing[:10]}", file=sys.stderr)
sys.exit(1 if missing or not accepted else 0)
PY
}
