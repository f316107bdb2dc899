#!/usr/bin/env bash
# Local test services: a throw-away PostgreSQL and an S3-compatible server (moto),
# both on 127.0.0.1 at free ports, for the registry's backend tests.
#
#   eval "$(.ci/services.sh start)"   # starts both, prints the `export` lines the tests read
#   .venv/bin/python -m pytest -q      # the PostgreSQL / S3 tests now run instead of skipping
#   .ci/services.sh stop               # stops both, removes their data
#
# PostgreSQL: the binaries found on the machine (PATH, /usr/lib/postgresql/*/bin),
# else Debian's `postgresql` package via apt-get (root only). initdb refuses to run
# as root, so as root the server runs as the `postgres` user (or `nobody`).
# moto: `python -m moto.server` from $CKREG_SVC_PYTHON (default .venv/bin/python,
# then python3); it comes with the `dev` extra.
# State (data dir, logs, pids, env file) lives in $CKREG_SVC_DIR (default: a
# folder under /tmp named after this checkout, so the unprivileged server user
# can reach it wherever the checkout is).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
STATE="${CKREG_SVC_DIR:-${TMPDIR:-/tmp}/ckreg-services-$(printf %s "$ROOT" | cksum | cut -d" " -f1)}"
PY="${CKREG_SVC_PYTHON:-}"
if [ -z "$PY" ]; then
    if [ -x "$ROOT/.venv/bin/python" ]; then PY="$ROOT/.venv/bin/python"; else PY="$(command -v python3)"; fi
fi

log() { echo "services: $*" >&2; }

free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

find_pg_bin() {
    local d
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(readlink -f "$(command -v initdb)")"
        return 0
    fi
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then echo "$d"; return 0; fi
    done
    return 1
}

install_pg() {
    if [ "$(id -u)" != 0 ]; then
        log "PostgreSQL is not installed; install Debian's postgresql package (apt-get install postgresql)"
        return 1
    fi
    log "installing PostgreSQL (apt-get install postgresql)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    # the package's own cluster is not used; policy-rc.d keeps it from starting one
    apt-get install -y -qq --no-install-recommends postgresql >&2
}

# as_pg CMD...: run as the unprivileged owner of the data dir
as_pg() {
    if [ "$(id -u)" = 0 ]; then
        if command -v runuser >/dev/null 2>&1; then runuser -u "$PGUSER_OS" -- "$@"
        else su -s /bin/sh "$PGUSER_OS" -c "$(printf '%q ' "$@")"; fi
    else
        "$@"
    fi
}

wait_for() {  # wait_for SECONDS CMD...
    local limit=$1; shift
    local t=0
    until "$@" >/dev/null 2>&1; do
        t=$((t + 1))
        if [ "$t" -gt $((limit * 10)) ]; then return 1; fi
        sleep 0.1
    done
}

start_pg() {
    local bin port
    bin="$(find_pg_bin)" || { install_pg && bin="$(find_pg_bin)"; } || return 1
    PGUSER_OS="$(id -un)"
    if [ "$(id -u)" = 0 ]; then
        if id postgres >/dev/null 2>&1; then PGUSER_OS=postgres; else PGUSER_OS=nobody; fi
    fi
    mkdir -p "$STATE/pg"
    chmod 755 "$STATE"
    [ "$(id -u)" = 0 ] && chown "$PGUSER_OS" "$STATE/pg"
    chmod 700 "$STATE/pg"
    as_pg "$bin/initdb" -D "$STATE/pg/data" -U ckreg --auth=trust -E UTF8 --locale=C.UTF-8 >"$STATE/pg-initdb.log" 2>&1 \
        || as_pg "$bin/initdb" -D "$STATE/pg/data" -U ckreg --auth=trust -E UTF8 --no-locale >"$STATE/pg-initdb.log" 2>&1 \
        || { log "initdb failed (see $STATE/pg-initdb.log)"; return 1; }
    port="$(free_port)"
    # 127.0.0.1 only, no unix socket outside the data dir, fsync off (test data only)
    as_pg "$bin/pg_ctl" -D "$STATE/pg/data" -l "$STATE/pg/server.log" -w -t 60 \
        -o "-h 127.0.0.1 -p $port -k $STATE/pg -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
        start >&2 || { log "PostgreSQL did not start (see $STATE/pg/server.log)"; return 1; }
    echo "$bin" >"$STATE/pg.bin"
    echo "$PGUSER_OS" >"$STATE/pg.user"
    echo "export CKREG_TEST_PG_URL=postgresql://ckreg@127.0.0.1:$port/postgres" >>"$STATE/env"
    log "PostgreSQL $("$bin/postgres" --version | awk "{print \$3}") on 127.0.0.1:$port"
}

start_s3() {
    local port
    if ! "$PY" -c 'import moto.server' >/dev/null 2>&1; then
        log "moto's server is not installed for $PY (pip install 'moto[server]', part of the dev extra)"
        return 1
    fi
    port="$(free_port)"
    AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
        nohup "$PY" -m moto.server -H 127.0.0.1 -p "$port" >"$STATE/s3.log" 2>&1 </dev/null &
    echo $! >"$STATE/s3.pid"
    if ! wait_for 60 "$PY" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/moto-api/', timeout=1)"; then
        log "the S3 server did not start (see $STATE/s3.log)"
        return 1
    fi
    {
        echo "export CKREG_TEST_S3_ENDPOINT=http://127.0.0.1:$port"
        echo "export AWS_ACCESS_KEY_ID=testing"
        echo "export AWS_SECRET_ACCESS_KEY=testing"
        echo "export AWS_DEFAULT_REGION=us-east-1"
    } >>"$STATE/env"
    log "S3 (moto) on 127.0.0.1:$port"
}

stop() {
    if [ -f "$STATE/s3.pid" ]; then
        kill "$(cat "$STATE/s3.pid")" 2>/dev/null || true
        rm -f "$STATE/s3.pid"
    fi
    if [ -f "$STATE/pg.bin" ] && [ -d "$STATE/pg/data" ]; then
        PGUSER_OS="$(cat "$STATE/pg.user")"
        as_pg "$(cat "$STATE/pg.bin")/pg_ctl" -D "$STATE/pg/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$STATE"
}

case "${1:-}" in
    start)
        if [ -f "$STATE/env" ]; then stop; fi   # a previous run that was not stopped
        mkdir -p "$STATE"
        : >"$STATE/env"
        start_pg || { stop; exit 1; }
        start_s3 || { stop; exit 1; }
        cat "$STATE/env"
        ;;
    stop) stop ;;
    env) cat "$STATE/env" ;;
    *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
