#!/usr/bin/env bash
# Local Apache Kafka (KRaft, single node on loopback) without Docker.
#
#   scripts/kafka.sh fetch    download the pinned broker jars from Maven Central into the cache
#   scripts/kafka.sh start    fetch if needed, format storage once, start, wait until it answers
#   scripts/kafka.sh stop     stop the broker this script started (SIGTERM, then SIGKILL)
#   scripts/kafka.sh status   say whether a broker answers on the bootstrap address
#   scripts/kafka.sh version  print the pinned Kafka version
#
# A broker already answering on the address is reused, never started twice. With
# KAFKA_BOOTSTRAP=host:port set, the project uses that external cluster and this
# script starts nothing.
#
# SECURE=1 runs a second, secured instance (default port 9192, its own data folder):
# TLS with SASL/SCRAM-SHA-512 for clients, mutual TLS on the controller listener, and
# the StandardAuthorizer with the mesh's ACLs (meshkernel/kafka_acl.py). `start` creates
# the CA, broker keystore and one password per principal (`mesh kafka secrets`) in
# STATE/secrets, then provisions topics, credentials and ACLs for MESH_TOPIC_PREFIX as
# the admin (`mesh kafka provision`); each service then uses STATE/secrets/env/NAME.env.
# It needs the project's virtual environment (make venv). KAFKA_STATE_DIR moves the
# instance's data and secrets elsewhere (the tests use a temporary folder).
#
#   SECURE=1 scripts/kafka.sh start|stop|status|env NAME
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
HERE="$ROOT/scripts/kafka"
CACHE="${MESH_CACHE_DIR:-$ROOT/.cache}/kafka"
SECURE="${SECURE:-0}"
if [[ "$SECURE" == 1 ]]; then
    PORT="${KAFKA_PORT:-9192}"
    STATE="${KAFKA_STATE_DIR:-$CACHE/node-$PORT-secure}"
else
    PORT="${KAFKA_PORT:-9092}"
    STATE="${KAFKA_STATE_DIR:-$CACHE/node-$PORT}"
fi
CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-$((PORT + 1))}"
SECRETS="$STATE/secrets"
PYTHON="${MESH_PYTHON:-$ROOT/.venv/bin/python}"
JARS="$CACHE/jars"
PIDFILE="$STATE/broker.pid"
START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"

say() { echo "kafka: $*" >&2; }

kafka_version() {
    sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$HERE/pom.xml"
}

fetch() {
    local version stamp
    version="$(kafka_version)"
    # The stamp follows the whole pom, so any change of pins fetches again.
    stamp="$JARS/.pom-$(sha256sum "$HERE/pom.xml" | cut -c1-16)"
    if [[ -f "$stamp" ]]; then
        return 0
    fi
    command -v java >/dev/null || { say "Java 17+ is needed to run Kafka $version"; exit 1; }
    say "fetching Apache Kafka $version jars from Maven Central into $JARS"
    maven_fetch kafka "$HERE/pom.xml" "$JARS" "$CACHE/fetch.log"
    touch "$stamp"
}

JAVA_ARGS=(-Xms256m -Xmx768m -XX:+UseG1GC
    "-Dlog4j2.configurationFile=$HERE/log4j2.properties"
    "-Dkafka.logs.dir=$STATE/logs" -cp "$JARS/*")

mesh() {
    [[ -x "$PYTHON" ]] || { say "SECURE=1 needs the project's virtual environment: run 'make venv'"; exit 1; }
    (cd "$ROOT" && "$PYTHON" -m meshcli.main "$@")
}

configure() {
    mkdir -p "$STATE/logs" "$STATE/data"
    local template="$HERE/server.properties.template" scram=()
    if [[ "$SECURE" == 1 ]]; then
        mesh kafka secrets "$SECRETS" --bootstrap "127.0.0.1:$PORT"
        template="$HERE/server-secure.properties.template"
        # The admin and the broker exist from the first start; `mesh kafka provision` adds the
        # services' credentials (it connects as the admin).
        for principal in admin broker; do
            scram+=(--add-scram "SCRAM-SHA-512=[name=$principal,password=$(cat "$SECRETS/passwords/$principal.password")]")
        done
    fi
    (umask 077 && sed -e "s|@PORT@|$PORT|g" -e "s|@CONTROLLER_PORT@|$CONTROLLER_PORT|g" \
        -e "s|@DATA_DIR@|$STATE/data|g" -e "s|@SECRETS@|$SECRETS|g" \
        -e "s|@BROKER_PASSWORD@|$(cat "$SECRETS/passwords/broker.password" 2>/dev/null || true)|g" \
        "$template" > "$STATE/server.properties")
    if [[ ! -f "$STATE/data/meta.properties" ]]; then
        local cluster_id
        cluster_id="$(java "${JAVA_ARGS[@]}" kafka.tools.StorageTool random-uuid | tail -1)"
        java "${JAVA_ARGS[@]}" kafka.tools.StorageTool format -t "$cluster_id" \
            -c "$STATE/server.properties" "${scram[@]}" >/dev/null
        say "formatted storage in $STATE/data (cluster $cluster_id)"
    fi
}

provision() {  # topics, the services' SCRAM credentials and the ACLs, as the admin principal
    [[ "$SECURE" == 1 ]] || return 0
    (set -a && source "$SECRETS/env/admin.env" && set +a && mesh kafka provision --credentials "$SECRETS")
    say "secured: each service reads its settings from $SECRETS/env/<referral|region|notify|observer>.env"
}

start() {
    if [[ -n "${KAFKA_BOOTSTRAP:-}" && "$SECURE" != 1 ]]; then
        say "using external cluster at $KAFKA_BOOTSTRAP; nothing to start"
        return 0
    fi
    if port_answers 127.0.0.1 "$PORT"; then
        say "reusing the broker already answering on 127.0.0.1:$PORT"
        provision
        return 0
    fi
    fetch
    configure
    say "starting Kafka $(kafka_version) on 127.0.0.1:$PORT$([[ "$SECURE" == 1 ]] && echo ' (TLS, SASL/SCRAM, ACLs)') (logs: $STATE/logs)"
    # Its own session, so a Ctrl-C in the terminal reaches the broker only through
    # 'stop', which waits for a clean shutdown.
    setsid java "${JAVA_ARGS[@]}" kafka.Kafka "$STATE/server.properties" \
        >"$STATE/logs/stdout.log" 2>&1 </dev/null &
    echo $! > "$PIDFILE"
    wait_for_port kafka "$PORT" "$PIDFILE" "$START_TIMEOUT" "$STATE/logs"
    say "ready on 127.0.0.1:$PORT"
    provision
}

stop() {
    stop_pidfile kafka "$PIDFILE"
}

status() {
    local address="${KAFKA_BOOTSTRAP:-127.0.0.1:$PORT}"
    [[ "$SECURE" == 1 ]] && address="127.0.0.1:$PORT"
    if port_answers "${address%:*}" "${address##*:}"; then
        echo "kafka answers on $address"
    else
        echo "no kafka on $address"
        return 1
    fi
}

case "${1:-}" in
    fetch) fetch ;;
    start) start ;;
    stop) stop ;;
    status) status ;;
    version) kafka_version ;;
    env) cat "$SECRETS/env/${2:?which principal: referral, region, notify, observer or admin}.env" ;;
    *) echo "usage: [SECURE=1] $0 fetch|start|stop|status|version|env NAME" >&2; exit 2 ;;
esac
