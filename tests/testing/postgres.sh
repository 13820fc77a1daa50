#!/usr/bin/env bash
# postgres.sh start|stop|pause|resume|url STATE_DIR
# A throw-away PostgreSQL server for the test suite, on loopback only.
#
#   start: initdb a fresh cluster, start it on a free 127.0.0.1 port (and a
#          unix socket in its own directory), create the database kvmart_test,
#          and write its URL to STATE_DIR/url. Fails loudly when PostgreSQL is
#          not installed (`make setup` installs it): tests that need it never
#          turn into skips.
#   stop:  stops that server and removes its cluster.
#   pause / resume: stops the server (fast shutdown: sessions are cut) and
#          starts it again on the same port, for tests of a database outage.
#   url:   prints the URL.
#
# KVMART_PG_DURABLE=1 keeps PostgreSQL's default durability (fsync, full page
# writes, synchronous commit), for benchmarks.
#
# PostgreSQL refuses to run as root, so under root the cluster belongs to the
# `postgres` user (created by the Debian package) and lives under /tmp, where
# that user can write. Durability is off (fsync, full_page_writes): a test
# cluster is thrown away, and the ledger's own crash tests run on SQLite.
set -euo pipefail

cmd="${1:-}"
state="${2:-}"
if [ -z "$cmd" ] || [ -z "$state" ]; then
  echo "usage: postgres.sh start|stop|pause|resume|url STATE_DIR" >&2
  exit 2
fi

find_bin() {
  local dir
  for dir in /usr/lib/postgresql/*/bin; do
    if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
      echo "$dir"
      return 0
    fi
  done
  command -v initdb >/dev/null 2>&1 && dirname "$(command -v initdb)" && return 0
  return 1
}

as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

case "$cmd" in
  start)
    bin=$(find_bin) || {
      echo "error: PostgreSQL (initdb, pg_ctl) not found; run \`make setup\` (scripts/setup.sh installs postgresql)" >&2
      exit 1
    }
    if [ -f "$state/pgdata_path" ]; then "$0" stop "$state" || true; fi
    mkdir -p "$state"
    rm -f "$state/url"
    cluster=$(mktemp -d /tmp/kvmart-test-pg.XXXXXX)
    if [ "$(id -u)" -eq 0 ]; then
      id postgres >/dev/null 2>&1 || {
        echo "error: running as root and there is no postgres user to own the test cluster (the postgresql package creates it)" >&2
        exit 1
      }
      chown postgres "$cluster"
    fi
    echo "$cluster" > "$state/pgdata_path"
    as_owner "$bin/initdb" -D "$cluster/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 --no-sync >"$state/initdb.log" 2>&1 || {
      cat "$state/initdb.log" >&2
      exit 1
    }
    # A free loopback port: ask the kernel for one, then hand it to the server.
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    cat >>"$cluster/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$cluster'
max_connections = 200
shared_buffers = 64MB
max_locks_per_transaction = 256
max_pred_locks_per_transaction = 256
EOF
    if [ "${KVMART_PG_DURABLE:-0}" != 1 ]; then
      printf 'fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n' >>"$cluster/data/postgresql.conf"
    fi
    as_owner "$bin/pg_ctl" -D "$cluster/data" -l "$cluster/server.log" -w -t 60 start >/dev/null || {
      cat "$cluster/server.log" >&2
      exit 1
    }
    as_owner "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -qAt -c "CREATE DATABASE kvmart_test" >/dev/null
    echo "postgresql://postgres@127.0.0.1:$port/kvmart_test" > "$state/url"
    cat "$state/url"
    ;;
  stop)
    [ -f "$state/pgdata_path" ] || exit 0
    cluster=$(cat "$state/pgdata_path")
    bin=$(find_bin) || exit 1
    if [ -d "$cluster/data" ]; then
      as_owner "$bin/pg_ctl" -D "$cluster/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    case "$cluster" in /tmp/kvmart-test-pg.*) rm -rf "$cluster" ;; esac
    rm -f "$state/pgdata_path" "$state/url"
    ;;
  pause | resume)
    cluster=$(cat "$state/pgdata_path")
    bin=$(find_bin) || exit 1
    if [ "$cmd" = pause ]; then
      as_owner "$bin/pg_ctl" -D "$cluster/data" -m fast -w stop >/dev/null
    else
      as_owner "$bin/pg_ctl" -D "$cluster/data" -l "$cluster/server.log" -w -t 60 start >/dev/null
    fi
    ;;
  url)
    cat "$state/url"
    ;;
  *)
    echo "usage: postgres.sh start|stop|pause|resume|url STATE_DIR" >&2
    exit 2
    ;;
esac
