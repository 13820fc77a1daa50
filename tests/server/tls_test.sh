#!/usr/bin/env bash
# HTTPS: a self-signed certificate for 127.0.0.1, `kvmart serve --tls-cert/--tls-key`,
# and curl verifying the chain against that certificate.
#   tls_test.sh KVMART MODEL_DIR
set -uo pipefail
KVMART=$1 MODEL=$2
DATA=$(mktemp -d "${TMPDIR:-/tmp}/kvmart-tls-XXXXXX")
trap 'rm -rf "$DATA"' EXIT
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=127.0.0.1" -addext "subjectAltName=IP:127.0.0.1" \
  -keyout "$DATA/key.pem" -out "$DATA/cert.pem" 2>/dev/null || { echo "openssl failed" >&2; exit 1; }
"$KVMART" serve --model "$MODEL" --data "$DATA" --listen 127.0.0.1:0 --port-file "$DATA/port" --threads 1 \
  --tls-cert "$DATA/cert.pem" --tls-key "$DATA/key.pem" >"$DATA/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 1 300); do [ -s "$DATA/port" ] && break; sleep 0.1; done
URL="https://127.0.0.1:$(cat "$DATA/port")"
ADMIN=$(cat "$DATA/admin.key")
OK=1
curl -sS --cacert "$DATA/cert.pem" "$URL/healthz" | grep -q '"ok"' || OK=0
KEY=$(curl -sS --cacert "$DATA/cert.pem" "$URL/v1/accounts" -H "Authorization: Bearer $ADMIN" -d '{"name":"a"}' |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["api_key"])')
curl -sS --cacert "$DATA/cert.pem" "$URL/v1/chat/completions" -H "Authorization: Bearer $KEY" \
  -d '{"messages":[{"role":"user","content":"hi"}],"max_tokens":3,"temperature":0}' | grep -q '"chat.completion"' || OK=0
# Plain HTTP on the TLS port is not served.
curl -s -m 5 "http://127.0.0.1:$(cat "$DATA/port")/healthz" | grep -q '"ok"' && OK=0
kill -TERM "$SERVER"
wait "$SERVER" || OK=0
[ "$OK" = 1 ] && echo "tls: OK" || { echo "tls: FAILED" >&2; cat "$DATA/server.log" >&2; exit 1; }
