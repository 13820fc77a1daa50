#!/usr/bin/env bash
# SIGTERM while a generation is streaming: the request still completes (its
# stream ends with [DONE]), then the server exits 0.
#   graceful_shutdown.sh KVMART MODEL_DIR
set -uo pipefail
KVMART=$1 MODEL=$2
DATA=$(mktemp -d "${TMPDIR:-/tmp}/kvmart-term-XXXXXX")
trap 'rm -rf "$DATA"' EXIT
"$KVMART" serve --model "$MODEL" --data "$DATA" --listen 127.0.0.1:0 --port-file "$DATA/port" --threads 1 \
  >"$DATA/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 1 300); do [ -s "$DATA/port" ] && break; sleep 0.1; done
URL="http://127.0.0.1:$(cat "$DATA/port")"
ADMIN=$(cat "$DATA/admin.key")
KEY=$(curl -s "$URL/v1/accounts" -H "Authorization: Bearer $ADMIN" -d '{"name":"a","scopes":"buy"}' |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["api_key"])')
curl -sN "$URL/v1/chat/completions" -H "Authorization: Bearer $KEY" \
  -d '{"messages":[{"role":"user","content":"go"}],"max_tokens":300,"temperature":0,"stream":true}' \
  >"$DATA/stream.txt" &
CURL=$!
# Wait until tokens are flowing, then ask the server to stop.
for _ in $(seq 1 200); do [ "$(grep -c '^data: ' "$DATA/stream.txt" 2>/dev/null)" -ge 3 ] && break; sleep 0.02; done
kill -TERM "$SERVER"
wait "$CURL"; CURL_STATUS=$?
wait "$SERVER"; SERVER_STATUS=$?
EVENTS=$(grep -c '^data: ' "$DATA/stream.txt")
echo "stream: $EVENTS events, curl exit $CURL_STATUS; server exit $SERVER_STATUS"
tail -c 200 "$DATA/stream.txt"; echo
if [ "$SERVER_STATUS" -ne 0 ] || ! grep -q 'data: \[DONE\]' "$DATA/stream.txt" || [ "$EVENTS" -lt 200 ]; then
  echo "graceful_shutdown: FAILED" >&2
  tail -5 "$DATA/server.log" >&2
  exit 1
fi
echo "graceful_shutdown: in-flight stream completed, exit 0"
