# Helpers of the multi-node tests (postgres_nodes.sh, nginx_nodes.sh), sourced
# after W (the test's work directory) and KVMART, MODEL are set. Every node,
# server and directory a test starts is registered here and torn down on exit.
PIDS=()
STOPS=()     # commands run at exit, after the nodes are gone
nodes_cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  for c in "${STOPS[@]}"; do eval "$c" >/dev/null 2>&1 || true; done
  rm -rf "$W"
}
trap nodes_cleanup EXIT

fail() {
  echo "$(basename "$0" .sh): FAILED: $*" >&2
  for f in "$W"/*/server.log "$W"/nginx/error.log; do
    [ -f "$f" ] && { echo "--- $f" >&2; tail -15 "$f" >&2; }
  done
  exit 1
}

# HTTP status of a curl call; the body goes to $W/body.
code() { curl -s -o "$W/body" -w '%{http_code}' "$@"; }

# start_node NAME [serve flags…]: `kvmart serve` with DIR=$W/NAME on a free
# loopback port, written to $W/NAME/port; returns when it listens.
start_node() {
  local n=$1
  shift
  mkdir -p "$W/$n"
  "$KVMART" serve --model "$MODEL" --data "$W/$n" --listen 127.0.0.1:0 --port-file "$W/$n/port" \
    --threads 1 "$@" >"$W/$n/server.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  for _ in $(seq 1 300); do
    [ -s "$W/$n/port" ] && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
node_url() { echo "http://127.0.0.1:$(cat "$W/$1/port")"; }

# A counter of a node's /metrics ("name{labels}" exactly), 0 when absent.
metric() {  # url series
  curl -s "$1/metrics" | awk -v k="$2" '$1 == k { print $2; found = 1 } END { if (!found) print 0 }'
}
