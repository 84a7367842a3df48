#!/usr/bin/env bash
# Checks the local servers the test suite talks to and starts any that is down.
#
#   scripts/services.sh          check and start all of them
#   scripts/services.sh redis    only the ones named
#
# Servers: redis (6379; also installs PyPI `rq` for the RQ-worker test when missing),
# redis-cluster (a 3-master Redis Cluster with one replica per master on 7000-7005, data in
# /var/lib/redis-cluster, see scripts/redis-cluster.sh), rabbitmq (5672), postgres (5432), mariadb (3306), mosquitto (1883),
# nats (4222), RabbitMQ's STOMP plugin (61613, for the activemq module) and moto's S3/SQS server
# (5000, for the s3 and aws_sqs modules; installed from PyPI with pip when missing), Google's
# Pub/Sub emulator (8085, for the gcp_pubsub module; Debian package
# google-cloud-cli-pubsub-emulator from Google's apt repository, which needs Java), tansu, a
# Kafka-compatible broker (9092, for the kafka module; built from crates.io with `cargo install`
# into ${XDG_CACHE_HOME:-$HOME/.cache}/webhook-connect/tools when missing, in memory, so every
# start is empty), and for the clickhouse module scripts/chdb_http.py (8123): ClickHouse's HTTP
# interface in front of chDB, the ClickHouse engine as a library (PyPI `chdb`, installed with pip
# when missing). That one is not a ClickHouse server: the SQL runs in the real engine, the HTTP
# layer is ours (see the script and docs/modules.md). All on 127.0.0.1.
# Not a server: `browser` (included when no name is given) installs Debian's chromium and
# chromium-driver for the dashboard's browser test (scripts/browser.sh).
# Each is started with the command a Debian machine of this project's kind uses; a server that
# is not installed, or does not come up in time, fails the script with a message that says
# which one and why.
set -euo pipefail

declare -A PORT=(
  [redis]=6379 [redis-cluster]=7000 [rabbitmq]=5672 [postgres]=5432 [mariadb]=3306 [mosquitto]=1883 [nats]=4222
  [stomp]=61613 [moto]=5000 [pubsub]=8085 [clickhouse]=8123 [kafka]=9092
)
ORDER=(redis redis-cluster rabbitmq postgres mariadb mosquitto nats stomp moto pubsub clickhouse kafka)
HERE=$(cd "$(dirname "$0")" && pwd)

# The emulator's own launcher (the package's; `gcloud beta emulators pubsub start` runs the same).
PUBSUB_EMULATOR=/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator

# tansu (the Kafka-compatible broker of the kafka module's tests) is built once into this
# cache; the build directory is kept too, so a re-run after a version bump is incremental.
# Its default features store nothing (only the `null` engine): `dynostore` adds `memory://`.
TOOLS_CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/webhook-connect
TANSU_VERSION=0.6.0
TANSU_FEATURES=dynostore
TANSU=$TOOLS_CACHE/tools/bin/tansu

is_up() { # port
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

start() { # name
  case "$1" in
    redis)
      mkdir -p /var/lib/redis /var/log/redis
      redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/ci.log ;;
    redis-cluster)
      "$HERE/redis-cluster.sh" start 7000 /var/lib/redis-cluster ;;
    rabbitmq)
      rabbitmq-server -detached ;;
    postgres)
      pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start ;;
    mariadb)
      start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd ;;
    mosquitto)
      mosquitto -d -c /etc/mosquitto/mosquitto.conf ;;
    nats)
      start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
        -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log ;;
    stomp)
      # Enabling an enabled plugin is a no-op; RabbitMQ itself must be up (it comes first).
      rabbitmq-plugins enable rabbitmq_stomp ;;
    moto)
      # moto.server needs the [server] extra (flask); a plain `moto` install is not enough.
      if ! python3 -c 'import moto.server' >/dev/null 2>&1; then
        python3 -m pip install --quiet --disable-pip-version-check 'moto[server]'
      fi
      setsid nohup python3 -m moto.server -H 127.0.0.1 -p 5000 \
        >/tmp/services-moto-server.log 2>&1 < /dev/null & ;;
    pubsub)
      command -v java >/dev/null 2>&1 || { echo "the Pub/Sub emulator needs java (openjdk)"; return 1; }
      setsid nohup "$PUBSUB_EMULATOR" --host=127.0.0.1 --port=8085 \
        >/tmp/services-pubsub-emulator.log 2>&1 < /dev/null & ;;
    clickhouse)
      # chDB is ClickHouse's engine as a Python library (a large wheel); the script serves the
      # HTTP interface the clickhouse module uses. Data survives restarts in /var/lib/chdb-http.
      if ! python3 -c 'import chdb' >/dev/null 2>&1; then
        python3 -m pip install --quiet --disable-pip-version-check chdb
      fi
      mkdir -p /var/lib/chdb-http
      setsid nohup python3 "$HERE/chdb_http.py" --host 127.0.0.1 --port 8123 \
        --path /var/lib/chdb-http >/tmp/services-chdb-http.log 2>&1 < /dev/null & ;;
    kafka)
      # The memory engine keeps the broker stateless: a restart starts with no topics. Topics
      # are not auto-created; the tests create and delete their own.
      setsid nohup "$TANSU" broker \
        --kafka-listener-url tcp://127.0.0.1:9092 \
        --kafka-advertised-listener-url tcp://127.0.0.1:9092 \
        --storage-engine memory://tansu/ \
        >/tmp/services-tansu-server.log 2>&1 < /dev/null & ;;
  esac
}

binary_of() { # name
  case "$1" in
    redis|redis-cluster) echo redis-server ;; rabbitmq) echo rabbitmq-server ;; postgres) echo pg_ctlcluster ;;
    mariadb) echo /usr/sbin/mariadbd ;; mosquitto) echo mosquitto ;; nats) echo /usr/sbin/nats-server ;;
    stomp) echo rabbitmq-plugins ;; moto) echo python3 ;; pubsub) echo "$PUBSUB_EMULATOR" ;;
    clickhouse) echo python3 ;; kafka) echo "$TANSU" ;;
  esac
}

# Builds what a server needs when it is missing and can be built here; fails when it cannot.
install() { # name
  case "$1" in
    kafka)
      # cargo records the features of an install; one without the memory engine is rebuilt.
      if [ -x "$TANSU" ] && grep -q "\"$TANSU_FEATURES\"" "$TOOLS_CACHE/tools/.crates2.json" 2>/dev/null
      then
        return 0
      fi
      # fd 3 is the terminal: the build takes many minutes the first time.
      echo "services: building tansu $TANSU_VERSION (once; cached in $TOOLS_CACHE)" >&3
      CARGO_TARGET_DIR=$TOOLS_CACHE/tools-build cargo install tansu --version "$TANSU_VERSION" \
        --locked --features "$TANSU_FEATURES" --root "$TOOLS_CACHE/tools" ;;
  esac
}

wanted=("$@")
[ ${#wanted[@]} -eq 0 ] && wanted=(browser "${ORDER[@]}")

# The browser is installed, not started.
if [[ " ${wanted[*]} " == *" browser "* ]]; then
  "$HERE/browser.sh" || exit 1
  servers=()
  for name in "${wanted[@]}"; do [ "$name" = browser ] || servers+=("$name"); done
  wanted=("${servers[@]}")
fi

# The redis_rq RQ-mode test runs a real RQ worker (PyPI `rq`); install it with Redis.
if [[ " ${wanted[*]} " == *" redis "* ]] && ! python3 -c 'import rq' >/dev/null 2>&1; then
  echo "services: installing RQ (PyPI rq) for the redis_rq worker test"
  if ! python3 -m pip install --quiet --disable-pip-version-check rq >/tmp/services-rq.log 2>&1; then
    echo "services: installing rq with pip failed:" >&2
    cat /tmp/services-rq.log >&2
    exit 1
  fi
fi

failed=0
for name in "${wanted[@]}"; do
  port=${PORT[$name]:-}
  if [ -z "$port" ]; then
    echo "services: unknown server '$name' (known: ${ORDER[*]})" >&2
    exit 2
  fi
  # The cluster script checks all six nodes and the cluster itself (idempotent), so it runs
  # even when the first port answers.
  if [ "$name" != redis-cluster ] && is_up "$port"; then
    echo "services: $name is up on 127.0.0.1:$port"
    continue
  fi
  if ! install "$name" 3>&1 >/tmp/services-"$name"-install.log 2>&1; then
    echo "services: installing $name failed (log: /tmp/services-$name-install.log):" >&2
    tail -n 20 /tmp/services-"$name"-install.log >&2
    failed=1
    continue
  fi
  if ! command -v "$(binary_of "$name")" >/dev/null 2>&1; then
    echo "services: $name is down and not installed ($(binary_of "$name") not found)" >&2
    if [ "$name" = pubsub ]; then
      echo "services: install the Debian package google-cloud-cli-pubsub-emulator (Google's apt" \
        "repository; not reachable from every machine)" >&2
    fi
    failed=1
    continue
  fi
  echo "services: starting $name"
  if ! start "$name" >/tmp/services-"$name".log 2>&1; then
    echo "services: starting $name failed:" >&2
    cat /tmp/services-"$name".log >&2
    failed=1
    continue
  fi
  # RabbitMQ takes the longest to boot; 90 s covers a cold start on 2 cores.
  for _ in $(seq 1 180); do
    is_up "$port" && break
    sleep 0.5
  done
  if is_up "$port"; then
    echo "services: $name is up on 127.0.0.1:$port"
  else
    echo "services: $name did not open 127.0.0.1:$port within 90 s" >&2
    failed=1
  fi
done
exit $failed
