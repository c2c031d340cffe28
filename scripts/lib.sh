# Shared helpers of the scripts that run local infrastructure (sourced, not run).

port_answers() {  # host port
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

pid_alive() {  # pidfile -> prints the pid if that process runs
    [[ -f "$1" ]] || return 1
    local pid
    pid="$(cat "$1")"
    kill -0 "$pid" 2>/dev/null && echo "$pid"
}

stop_pidfile() {  # name pidfile: SIGTERM, wait up to 30 s, then SIGKILL
    local name="$1" pidfile="$2" pid
    if ! pid="$(pid_alive "$pidfile")"; then
        rm -f "$pidfile"
        return 0
    fi
    echo "$name: stopping (pid $pid)" >&2
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do
        kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; echo "$name: stopped" >&2; return 0; }
        sleep 0.2
    done
    echo "$name: no clean stop within 30s; killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$pidfile"
}

maven_fetch() {  # name pom output-dir log: copy a pom's runtime dependencies, quietly
    local name="$1" pom="$2" out="$3" log="$4"
    command -v mvn >/dev/null || { echo "$name: Maven (mvn) is needed to fetch it" >&2; exit 1; }
    rm -rf "$out" && mkdir -p "$out" "$(dirname "$log")"
    if ! mvn -B -Dstyle.color=never -f "$pom" dependency:copy-dependencies \
            -DoutputDirectory="$out" -DincludeScope=runtime >"$log" 2>&1; then
        echo "$name: fetching failed; last lines of $log:" >&2
        tail -20 "$log" >&2
        exit 1
    fi
}

wait_for_port() {  # name port pidfile timeout-seconds logdir
    local name="$1" port="$2" pidfile="$3" timeout="$4" logs="$5" waited=0
    until port_answers 127.0.0.1 "$port"; do
        if ! pid_alive "$pidfile" >/dev/null; then
            echo "$name: exited during start; last lines of its log:" >&2
            tail -20 "$logs"/*.log 2>/dev/null >&2 || true
            exit 1
        fi
        if (( waited >= timeout * 5 )); then
            echo "$name: no answer on 127.0.0.1:$port after ${timeout}s; see $logs" >&2
            exit 1
        fi
        sleep 0.2
        waited=$((waited + 1))
    done
}
