#!/usr/bin/env bash
# Runs a command against a fresh `kvmart serve` on an ephemeral loopback port:
#   with_server.sh KVMART MODEL_DIR [serve flags...] -- COMMAND [ARGS...]
# The command sees KVMART_URL (http://127.0.0.1:PORT) and KVMART_ADMIN_KEY. The
# server is then stopped with SIGTERM and must exit 0 (graceful shutdown).
set -uo pipefail
KVMART=$1 MODEL=$2
shift 2
FLAGS=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do FLAGS+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
DATA=$(mktemp -d "${TMPDIR:-/tmp}/kvmart-srv-XXXXXX")
"$KVMART" serve --model "$MODEL" --data "$DATA" --listen 127.0.0.1:0 --port-file "$DATA/port" --threads 1 \
  "${FLAGS[@]}" >"$DATA/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 1 300); do
  [ -s "$DATA/port" ] && break
  if ! kill -0 "$SERVER" 2>/dev/null; then cat "$DATA/server.log" >&2; rm -rf "$DATA"; exit 1; fi
  sleep 0.1
done
export KVMART_URL="http://127.0.0.1:$(cat "$DATA/port")"
export KVMART_ADMIN_KEY="$(cat "$DATA/admin.key")"
"$@"
STATUS=$?
kill -TERM "$SERVER"
wait "$SERVER"
SERVER_STATUS=$?
if [ "$SERVER_STATUS" -ne 0 ]; then
  echo "with_server: kvmart serve exited with $SERVER_STATUS after SIGTERM" >&2
  tail -20 "$DATA/server.log" >&2
fi
grep -q '"msg":"stopped"' "$DATA/server.log" || { echo "with_server: no graceful stop in the log" >&2; SERVER_STATUS=1; }
[ "$STATUS" -ne 0 ] && tail -20 "$DATA/server.log" >&2
rm -rf "$DATA"
[ "$STATUS" -eq 0 ] && [ "$SERVER_STATUS" -eq 0 ]
