#!/usr/bin/env bash
# Local Zipkin (tracing UI and span store, in memory) for `make run` and the tracing tests.
#
#   scripts/zipkin.sh start|stop|status|url
#
# A Zipkin already answering on the port is reused. ZIPKIN_PORT sets the port (default 9411).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
HERE="$ROOT/scripts/zipkin"
CACHE="${MESH_CACHE_DIR:-$ROOT/.cache}/zipkin"
PORT="${ZIPKIN_PORT:-9411}"
STATE="$CACHE/node-$PORT"
JARS="$CACHE/jars"
PIDFILE="$STATE/zipkin.pid"

say() { echo "zipkin: $*" >&2; }

fetch() {
    local stamp
    stamp="$JARS/.pom-$(sha256sum "$HERE/pom.xml" | cut -c1-16)"
    [[ -f "$stamp" ]] && return 0
    say "fetching the Zipkin server from Maven Central into $JARS"
    maven_fetch zipkin "$HERE/pom.xml" "$JARS" "$CACHE/fetch.log"
    touch "$stamp"
}

start() {
    if port_answers 127.0.0.1 "$PORT"; then
        say "reusing the Zipkin already answering on 127.0.0.1:$PORT"
        return 0
    fi
    command -v java >/dev/null || { say "Java 17+ is needed to run Zipkin"; exit 1; }
    fetch
    mkdir -p "$STATE"
    say "starting Zipkin on http://127.0.0.1:$PORT/zipkin/"
    setsid java -Xms128m -Xmx512m -jar "$JARS"/zipkin-server-*-exec.jar \
        --server.address=127.0.0.1 --server.port="$PORT" --logging.level.root=WARN \
        >"$STATE/zipkin.log" 2>&1 </dev/null &
    echo $! > "$PIDFILE"
    wait_for_port zipkin "$PORT" "$PIDFILE" 120 "$STATE"
    say "ready on http://127.0.0.1:$PORT/zipkin/"
}

case "${1:-}" in
    fetch) fetch ;;
    start) start ;;
    stop) stop_pidfile zipkin "$PIDFILE" ;;
    status) port_answers 127.0.0.1 "$PORT" && echo "zipkin answers on 127.0.0.1:$PORT" || { echo "no zipkin on 127.0.0.1:$PORT"; exit 1; } ;;
    url) echo "http://127.0.0.1:$PORT/zipkin/" ;;
    *) echo "usage: $0 fetch|start|stop|status|url" >&2; exit 2 ;;
esac
