#!/usr/bin/env bash
# A throwaway local PostgreSQL from Debian's packages, for the tests and the benchmark.
#
#   scripts/postgres.sh start   start (or reuse) the server and create the database
#   scripts/postgres.sh stop    stop the server (the data folder stays, for the next start)
#   scripts/postgres.sh url     print the connection URL
#   scripts/postgres.sh status  exit 0 when the server answers
#
# Listens on 127.0.0.1 only, trust authentication on loopback (a test server, never a real one).
# Settings: POSTGRES_PORT (55432), POSTGRES_DB (referralmesh), POSTGRES_DIR (see below).
# initdb and postgres refuse to run as root, so they run as the `postgres` OS user; that user
# may not be able to enter the checkout (a 0700 folder, root's home), so the data folder lives
# outside it by default: /var/tmp/referralmesh-pg-<hash of the checkout path>, one per checkout.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PORT="${POSTGRES_PORT:-55432}"
DB="${POSTGRES_DB:-referralmesh}"
BASE="${POSTGRES_DIR:-/var/tmp/referralmesh-pg-$(printf '%s' "$ROOT" | sha256sum | cut -c1-16)}"
DATA="$BASE/data"
SOCKETS="$BASE/run"
LOG="$BASE/postgres.log"
OS_USER=postgres

url() { echo "postgresql://postgres@127.0.0.1:${PORT}/${DB}"; }

find_bin() {
  local dir
  dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
  if [[ -z "$dir" || ! -x "$dir/initdb" ]]; then
    echo "postgres.sh: PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin." >&2
    echo "postgres.sh: install them with: apt-get install -y postgresql" >&2
    exit 2
  fi
  echo "$dir"
}

as_pg() {
  if [[ "$(id -u)" == 0 ]]; then
    # From /, since the checkout (the current folder) may be closed to that user.
    if command -v runuser >/dev/null; then (cd / && runuser -u "$OS_USER" -- "$@")
    else (cd / && su -s /bin/sh "$OS_USER" -c "$(printf '%q ' "$@")"); fi
  else
    "$@"
  fi
}

answers() {
  local bin="$1"
  "$bin/pg_isready" -q -h 127.0.0.1 -p "$PORT" -U postgres >/dev/null 2>&1
}

ensure_user() {
  [[ "$(id -u)" == 0 ]] || return 0
  if ! id "$OS_USER" >/dev/null 2>&1; then
    useradd --system --home-dir "$BASE" --no-create-home --shell /usr/sbin/nologin "$OS_USER"
  fi
}

prepare_base() {
  # /var/tmp is shared by every user: a folder someone else made there is never ours to use.
  local owner expected
  expected="$(id -un)"
  [[ "$(id -u)" == 0 ]] && expected="$OS_USER"
  if [[ -e "$BASE" ]]; then
    owner="$(stat -c %U "$BASE")"
    if [[ "$owner" != "$expected" && "$owner" != "$(id -un)" ]]; then
      echo "postgres.sh: $BASE belongs to $owner, not $expected; remove it or set POSTGRES_DIR" >&2
      exit 1
    fi
  fi
  mkdir -p -m 0700 "$BASE"
  mkdir -p "$SOCKETS"
  if [[ "$(id -u)" == 0 ]]; then chown -R "$OS_USER:" "$BASE"; fi
  if ! as_pg test -w "$BASE"; then
    echo "postgres.sh: the $OS_USER user cannot write to $BASE; set POSTGRES_DIR to a folder it can reach" >&2
    exit 1
  fi
}

start() {
  local bin
  bin="$(find_bin)"
  if answers "$bin"; then
    create_db "$bin"
    echo "postgres answers on 127.0.0.1:${PORT}"
    return 0
  fi
  ensure_user
  prepare_base
  if [[ ! -s "$DATA/PG_VERSION" ]]; then
    as_pg "$bin/initdb" -D "$DATA" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >"$BASE/initdb.log" 2>&1 \
      || as_pg "$bin/initdb" -D "$DATA" -U postgres --auth=trust --encoding=UTF8 --no-locale >"$BASE/initdb.log" 2>&1 \
      || { echo "postgres.sh: initdb failed, see $BASE/initdb.log" >&2; exit 1; }
  fi
  # A crash leaves a stale pid file; postgres itself checks whether that process still lives.
  as_pg "$bin/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 start -o \
    "-c listen_addresses=127.0.0.1 -p ${PORT} -k ${SOCKETS} -c max_connections=200 -c fsync=on -c shared_buffers=128MB" \
    >/dev/null || { echo "postgres.sh: postgres did not start, see $LOG" >&2; tail -n 20 "$LOG" >&2 || true; exit 1; }
  create_db "$bin"
  echo "postgres started on 127.0.0.1:${PORT}"
}

create_db() {
  local bin="$1"
  local exists
  exists="$("$bin/psql" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = '${DB}'")"
  if [[ "$exists" != 1 ]]; then
    "$bin/psql" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -qc "CREATE DATABASE \"${DB}\"" 2>/dev/null \
      || [[ "$("$bin/psql" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -tAc \
              "SELECT 1 FROM pg_database WHERE datname = '${DB}'")" == 1 ]]
  fi
}

stop() {
  local bin
  bin="$(find_bin)"
  if [[ -s "$DATA/postmaster.pid" ]]; then
    as_pg "$bin/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >/dev/null 2>&1 || true
  fi
  echo "postgres stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  url) url ;;
  status) bin="$(find_bin)"; if answers "$bin"; then echo "postgres answers on 127.0.0.1:${PORT}"; else echo "postgres is not running"; exit 1; fi ;;
  *) echo "usage: $0 start|stop|url|status" >&2; exit 64 ;;
esac
