#!/usr/bin/env bash
# redis_cluster.sh start|stop|kill-master|url STATE_DIR [SLOT]
# A throw-away Redis Cluster for the test suite, on loopback only: three
# masters, each with one replica.
#
#   start:       starts six redis-server processes on free 127.0.0.1 ports
#                (each with its own directory, pid file and log under
#                STATE_DIR), joins them with `redis-cli --cluster create
#                --cluster-replicas 1`, waits until every node says
#                cluster_state:ok and every replica's link to its master is up,
#                and writes the masters' URL to STATE_DIR/url. Fails loudly when
#                Redis is not installed (`make setup` installs it): tests that
#                need it never turn into skips.
#   stop:        kills every node and removes STATE_DIR.
#   kill-master: SIGKILLs the master that owns SLOT (default 0), waits until
#                its replica has been promoted and the cluster is ok again, and
#                prints the killed port. The killed node stays dead.
#   url:         prints the URL.
#
# Nothing is persisted (no RDB, no AOF): a test cluster is thrown away. Redis
# runs as root without complaint, so there is no user switch as for PostgreSQL.
set -euo pipefail

cmd="${1:-}"
state="${2:-}"
usage() {
  echo "usage: redis_cluster.sh start|stop|kill-master|url STATE_DIR [SLOT]" >&2
  exit 2
}
if [ -z "$cmd" ] || [ -z "$state" ]; then usage; fi

NODES=6
WAIT_S=60

cli() {  # cli PORT ARGS...
  local port=$1
  shift
  redis-cli -h 127.0.0.1 -p "$port" "$@" 2>/dev/null
}

# Under pipefail a reader that stops early (head, grep -q) would fail the
# pipeline with SIGPIPE upstream: the readers below read everything.
role_of() {
  cli "$1" role | sed -n 1p
}

# Ports whose node has not been killed.
live_ports() {
  local p
  for p in $(cat "$state/ports"); do
    [ -f "$state/dead" ] && grep -qx "$p" "$state/dead" && continue
    echo "$p"
  done
}

# The master that owns slot $2 in the view of the node on port $1 ("" if none).
owner_of() {
  cli "$1" cluster nodes | awk -v s="$2" '
    $3 ~ /master/ && $3 !~ /fail/ {
      for (i = 9; i <= NF; i++) {
        if ($i ~ /^\[/) continue
        n = split($i, a, "-"); lo = a[1]; hi = (n > 1) ? a[2] : a[1]
        if (s + 0 >= lo + 0 && s + 0 <= hi + 0) { split($2, b, "@"); split(b[1], c, ":"); found = c[2] }
      }
    }
    END { if (found != "") print found }'
}

cluster_ok_everywhere() {
  local p
  for p in $(live_ports); do
    cli "$p" cluster info | grep '^cluster_state:ok' >/dev/null || return 1
  done
}

# Every one of the three replicas is linked to its master.
replicas_linked() {
  local p n=0
  for p in $(live_ports); do
    if [ "$(role_of "$p")" = slave ]; then
      cli "$p" info replication | grep '^master_link_status:up' >/dev/null || return 1
      n=$((n + 1))
    fi
  done
  [ $n -eq 3 ]
}

# A port p, with p+10000 (its cluster bus) also free, from a random base.
free_ports() {
  python3 - "$1" <<'EOF'
import random, socket, sys
want = int(sys.argv[1])
def free(p):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
        return True
    except OSError:
        return False
    finally:
        s.close()
got = []
p = random.randrange(20000, 30000)
while len(got) < want:
    if free(p) and free(p + 10000):
        got.append(p)
    p += 1
    if p >= 55535:
        p = 20000
print(" ".join(map(str, got)))
EOF
}

case "$cmd" in
  start)
    command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 || {
      echo "error: redis-server / redis-cli not found; run \`make setup\` (scripts/setup.sh installs redis-server and redis-tools)" >&2
      exit 1
    }
    if [ -f "$state/ports" ]; then "$0" stop "$state" || true; fi
    rm -rf "$state"
    mkdir -p "$state"
    ports=$(free_ports $NODES)
    echo "$ports" | tr ' ' '\n' >"$state/ports"
    for p in $ports; do
      dir="$state/node-$p"
      mkdir -p "$dir"
      redis-server --port "$p" --bind 127.0.0.1 --protected-mode no \
        --cluster-enabled yes --cluster-config-file "$dir/nodes.conf" --cluster-node-timeout 2000 \
        --save "" --appendonly no --dir "$dir" \
        --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" || {
        echo "error: redis-server on port $p did not start" >&2
        cat "$dir/redis.log" >&2 2>/dev/null || true
        exit 1
      }
    done
    for p in $ports; do
      for _ in $(seq $((WAIT_S * 10))); do
        [ "$(cli "$p" ping)" = PONG ] && break
        sleep 0.1
      done
      [ "$(cli "$p" ping)" = PONG ] || {
        echo "error: redis-server on port $p does not answer" >&2
        cat "$state/node-$p/redis.log" >&2 || true
        exit 1
      }
    done
    addrs=()
    for p in $ports; do addrs+=("127.0.0.1:$p"); done
    redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$state/create.log" 2>&1 || {
      cat "$state/create.log" >&2
      exit 1
    }
    ok=0
    for _ in $(seq $((WAIT_S * 10))); do
      if cluster_ok_everywhere && replicas_linked; then ok=1; break; fi
      sleep 0.1
    done
    if [ $ok != 1 ]; then
      echo "error: the cluster did not reach cluster_state:ok with all replicas linked in ${WAIT_S}s" >&2
      for p in $ports; do echo "--- $p" >&2; cli "$p" cluster info | head -3 >&2 || true; done
      exit 1
    fi
    masters=()
    for p in $ports; do
      [ "$(role_of "$p")" = master ] && masters+=("127.0.0.1:$p")
    done
    [ ${#masters[@]} -eq 3 ] || {
      echo "error: expected 3 masters, found ${#masters[@]}" >&2
      exit 1
    }
    (IFS=,; echo "redis://${masters[*]}") >"$state/url"
    cat "$state/url"
    ;;
  stop)
    [ -f "$state/ports" ] || { rm -rf "$state"; exit 0; }
    pids=()
    for p in $(cat "$state/ports"); do
      pidfile="$state/node-$p/redis.pid"
      [ -f "$pidfile" ] || continue
      pid=$(cat "$pidfile")
      # Only a redis-server of ours: the pid may have been reused.
      if [ -n "$pid" ] && grep -q redis-server "/proc/$pid/cmdline" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
        pids+=("$pid")
      fi
    done
    # Gone before this returns: the next start must find the ports free.
    for pid in "${pids[@]}"; do
      for _ in $(seq 50); do
        grep -q redis-server "/proc/$pid/cmdline" 2>/dev/null || break
        sleep 0.1
      done
    done
    rm -rf "$state"
    ;;
  kill-master)
    slot="${3:-0}"
    [ -f "$state/ports" ] || { echo "error: no cluster in $state" >&2; exit 1; }
    any=$(live_ports)
    any=${any%%$'\n'*}
    victim=$(owner_of "$any" "$slot")
    [ -n "$victim" ] || { echo "error: no master owns slot $slot" >&2; exit 1; }
    pid=$(cat "$state/node-$victim/redis.pid")
    echo "$victim" >>"$state/dead"
    kill -KILL "$pid"
    ok=0
    for _ in $(seq $((WAIT_S * 10))); do
      sleep 0.1
      done_all=1
      for p in $(live_ports); do
        o=$(owner_of "$p" "$slot")
        if [ -z "$o" ] || [ "$o" = "$victim" ]; then done_all=0; break; fi
      done
      if [ $done_all = 1 ] && cluster_ok_everywhere; then ok=1; break; fi
    done
    if [ $ok != 1 ]; then
      echo "error: no replica took over slot $slot from killed master $victim in ${WAIT_S}s" >&2
      exit 1
    fi
    echo "$victim"
    ;;
  url)
    cat "$state/url"
    ;;
  *)
    usage
    ;;
esac
