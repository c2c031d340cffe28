#!/usr/bin/env bash
# A real OpenID Connect provider (panva's certified `oidc-provider`, from npm at the version
# pinned in scripts/oidc-provider/package-lock.json) for the dashboard's sign-in tests.
#
#   scripts/oidc-provider.sh install    # npm ci into .cache/oidc-provider (once per lock file)
#   scripts/oidc-provider.sh modules    # prints the node_modules folder server.mjs loads it from
#
# The tests start `node scripts/oidc-provider/server.mjs` themselves on a free port
# (tests/browser/oidc_provider.py); nothing here runs a server.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HERE="$ROOT/scripts/oidc-provider"
CACHE="${MESH_CACHE_DIR:-$ROOT/.cache}/oidc-provider"

install() {
    local stamp
    stamp="$CACHE/.lock-$(sha256sum "$HERE/package-lock.json" | cut -c1-16)"
    [[ -f "$stamp" ]] && return 0
    command -v npm >/dev/null || { echo "oidc-provider: npm is needed to install it" >&2; exit 1; }
    echo "oidc-provider: installing from the npm registry into $CACHE" >&2
    rm -rf "$CACHE" && mkdir -p "$CACHE"
    cp "$HERE/package.json" "$HERE/package-lock.json" "$CACHE/"
    npm ci --silent --no-audit --no-fund --prefix "$CACHE" >&2
    touch "$stamp"
}

case "${1:-}" in
    install) install ;;
    modules) install; echo "$CACHE/node_modules" ;;
    *) echo "usage: $0 install|modules" >&2; exit 2 ;;
esac
