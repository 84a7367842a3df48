#!/usr/bin/env bash
# Starts a local Redis Cluster from the machine's redis-server: 3 masters and one replica per
# master, on 6 consecutive ports from BASE_PORT, with `appendonly yes` (data under DIR/<port>).
# Idempotent: nodes already up are left alone, and a cluster that was created before (its
# nodes.conf files are in DIR) is not created again; the script ends when every slot is served.
#
#   scripts/redis-cluster.sh start BASE_PORT DIR [NODE_TIMEOUT_MS]
#   scripts/redis-cluster.sh stop  BASE_PORT DIR      shuts the 6 nodes down and removes DIR
#
# scripts/services.sh starts the shared test cluster with it (ports 7000-7005); the failover
# test starts a private one on other ports, so killing its masters disturbs no other test.
set -euo pipefail

cmd=${1:-}
base=${2:-}
dir=${3:-}
timeout_ms=${4:-5000}
if [ -z "$cmd" ] || [ -z "$base" ] || [ -z "$dir" ]; then
  echo "usage: $0 start|stop BASE_PORT DIR [NODE_TIMEOUT_MS]" >&2
  exit 2
fi
ports=()
for i in 0 1 2 3 4 5; do ports+=($((base + i))); done

cli() { # port args…
  local port=$1
  shift
  redis-cli -h 127.0.0.1 -p "$port" "$@"
}

is_up() { # port
  [ "$(cli "$1" PING 2>/dev/null)" = PONG ]
}

case "$cmd" in
  stop)
    for port in "${ports[@]}"; do
      cli "$port" SHUTDOWN NOSAVE >/dev/null 2>&1 || true
    done
    rm -rf "$dir"
    exit 0 ;;
  start) ;;
  *)
    echo "unknown command '$cmd' (start or stop)" >&2
    exit 2 ;;
esac

command -v redis-server >/dev/null || { echo "redis-server is not installed" >&2; exit 1; }
for port in "${ports[@]}"; do
  is_up "$port" && continue
  mkdir -p "$dir/$port"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$port" \
    --cluster-enabled yes --cluster-config-file "$dir/$port/nodes.conf" \
    --cluster-node-timeout "$timeout_ms" \
    --appendonly yes --appendfsync everysec --save "" \
    --dir "$dir/$port" --logfile "$dir/$port/redis.log"
done
for port in "${ports[@]}"; do
  for _ in $(seq 1 100); do
    is_up "$port" && break
    sleep 0.1
  done
  is_up "$port" || { echo "redis-server on port $port did not start (log: $dir/$port/redis.log)" >&2; exit 1; }
done

# A fresh node knows only itself; once created, the nodes remember the cluster in nodes.conf.
known=$(cli "${ports[0]}" CLUSTER INFO | tr -d '\r' | sed -n 's/^cluster_known_nodes://p')
if [ "$known" = 1 ]; then
  hosts=()
  for port in "${ports[@]}"; do hosts+=("127.0.0.1:$port"); done
  redis-cli --cluster create "${hosts[@]}" --cluster-replicas 1 --cluster-yes >"$dir/create.log"
fi

for _ in $(seq 1 300); do
  ok=1
  for port in "${ports[@]}"; do
    state=$(cli "$port" CLUSTER INFO 2>/dev/null | tr -d '\r' | sed -n 's/^cluster_state://p')
    [ "$state" = ok ] || { ok=0; break; }
  done
  # …and every replica is attached and in sync, so a failover has somewhere to go.
  replicas=$(cli "${ports[0]}" CLUSTER NODES 2>/dev/null | grep -c ' slave ' || true)
  [ "$replicas" = 3 ] || ok=0
  for port in "${ports[@]}"; do
    info=$(cli "$port" INFO replication 2>/dev/null | tr -d '\r')
    if grep -q '^role:slave' <<<"$info" && ! grep -q '^master_link_status:up' <<<"$info"; then
      ok=0
    fi
  done
  [ "$ok" = 1 ] && exit 0
  sleep 0.2
done
echo "the Redis Cluster on ports ${ports[0]}-${ports[5]} did not reach cluster_state:ok with its replicas in sync" >&2
exit 1
