#!/usr/bin/env bash
# The main job (`make run`): start `kvmart serve` on the embedded default and
# run a scripted prefill-CDN round trip against it over HTTP:
#
#   publisher publishes a document (the provider prefills it once)
#   buyer buys one load, asks a question with the cache and without it
#   → prints both times, the cost saved, and that tokens and logits are identical
#
# Builds nothing (the Makefile's `run` target builds first). Synthesizes the
# default model if absent. Stops the server at the end, or leaves it running
# with --keep.
#
#   scripts/run_demo.sh [--keep] [--model DIR] [--shape SHAPE] [--doc FILE] [--port N] [--data DIR]
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=${BUILD:-build}
KVMART=${KVMART:-$BUILD/kvmart}
SHAPE=small            # hidden 256, 4 layers, real vocabulary: ~3k-token prefill in seconds on 2 cores
MODEL=""
DOC=docs/MARKET.md     # ~2,900 tokens of real text
PORT=0                 # 0: any free port (the machine may be shared)
KEEP=0
DATA=.kvmart/demo-data
while [ $# -gt 0 ]; do
  case "$1" in
    --keep) KEEP=1 ;;
    --model) MODEL=$2; shift ;;
    --shape) SHAPE=$2; shift ;;
    --doc) DOC=$2; shift ;;
    --port) PORT=$2; shift ;;
    --data) DATA=$2; shift ;;
    -h|--help) sed -n 2,14p "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
MODEL=${MODEL:-.kvmart/models/$SHAPE}
[ -x "$KVMART" ] || { echo "run_demo: $KVMART not built (make build)" >&2; exit 1; }
command -v curl >/dev/null && command -v python3 >/dev/null || { echo "run_demo: needs curl and python3" >&2; exit 1; }

if [ ! -f "$MODEL/config.json" ]; then
  echo "== synthesizing the $SHAPE model in $MODEL"
  "$KVMART" synth --shape "$SHAPE" --out "$MODEL"
fi

rm -rf "$DATA"
mkdir -p "$DATA"
echo "== starting kvmart serve (SQLite market + artifact store under $DATA)"
"$KVMART" serve --model "$MODEL" --data "$DATA" --listen "127.0.0.1:$PORT" --port-file "$DATA/port" \
  >"$DATA/server.log" 2>&1 &
SERVER=$!
stop_server() {
  if kill -0 "$SERVER" 2>/dev/null; then
    kill -TERM "$SERVER" 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || true
  fi
}
[ "$KEEP" = 1 ] || trap stop_server EXIT
for _ in $(seq 1 600); do
  [ -s "$DATA/port" ] && break
  kill -0 "$SERVER" 2>/dev/null || { cat "$DATA/server.log" >&2; exit 1; }
  sleep 0.1
done
URL="http://127.0.0.1:$(cat "$DATA/port")"
ADMIN=$(cat "$DATA/admin.key")

# call METHOD PATH KEY [JSON] — prints the body, fails on HTTP >= 400.
call() {
  local out code
  out=$(curl -sS -X "$1" "$URL$2" -H "Authorization: Bearer $3" -H "Content-Type: application/json" \
        ${4:+--data-binary "$4"} -w '\n%{http_code}')
  code=${out##*$'\n'}
  out=${out%$'\n'*}
  if [ "$code" -ge 400 ]; then echo "run_demo: $1 $2 -> HTTP $code: $out" >&2; return 1; fi
  printf '%s' "$out"
}
field() { python3 -c 'import json,sys; v=json.load(sys.stdin)
for k in sys.argv[1].split("."): v=v[int(k)] if k.isdigit() else v[k]
print(v)' "$1"; }

echo "== server at $URL; creating a publisher and a buyer (admin key in $DATA/admin.key)"
PUB=$(call POST /v1/accounts "$ADMIN" '{"name":"publisher","scopes":"publish"}' | field api_key)
BUYER_JSON=$(call POST /v1/accounts "$ADMIN" '{"name":"buyer","scopes":"buy"}')
BUYER=$(echo "$BUYER_JSON" | field api_key)
call POST "/v1/accounts/$(echo "$BUYER_JSON" | field account_id)/deposits" "$ADMIN" '{"amount":"1.00"}' >/dev/null

PREFIX=$(python3 -c 'import json,sys; print(json.dumps([
  {"role":"system","content":"You answer questions about the document."},
  {"role":"user","content":"Document:\n"+open(sys.argv[1],encoding="utf-8").read()}]))' "$DOC")
QUESTION='[{"role":"user","content":"In one sentence: how is a metered load charged?"}]'

echo "== publisher: POST /v1/artifacts ($DOC; the provider prefills it once)"
PUBLISHED=$(call POST /v1/artifacts "$PUB" "{\"messages\":$PREFIX,\"title\":\"$(basename "$DOC")\"}")
ID=$(echo "$PUBLISHED" | field artifact_id)
DOC_TOKENS=$(echo "$PUBLISHED" | field tokens)
printf '   %s: %s tokens, %s blocks, prefilled in %.2f s, per-load price %s USD\n' "$ID" "$DOC_TOKENS" \
  "$(echo "$PUBLISHED" | field blocks)" "$(echo "$PUBLISHED" | field prefill_seconds)" \
  "$(echo "$PUBLISHED" | field listing.per_load.amount)"

echo "== buyer: quote and purchase one metered load"
QUOTE=$(call POST "/v1/artifacts/$ID/quote" "$BUYER" '{"kind":"metered","quantity":1}')
call POST "/v1/artifacts/$ID/purchase" "$BUYER" '{"kind":"metered","quantity":1}' >/dev/null
BAL0=$(call GET /v1/accounts/me "$BUYER" | field balance.micros)

ask() {  # ask JSON_BODY -> prints response, and wall seconds on fd 3
  local t0 t1 out
  t0=$(date +%s.%N)
  out=$(call POST /v1/chat/completions "$BUYER" "$1")
  t1=$(date +%s.%N)
  python3 -c "print(f'{$t1-$t0:.3f}')" >&3
  printf '%s' "$out"
}
echo "== buyer asks WITH the cache (kv.artifact; only the question is prefilled)"
HIT=$(ask "{\"model\":\"kvmart\",\"messages\":$QUESTION,\"max_tokens\":24,\"temperature\":0,\"kvmart_debug\":true,\"kv\":{\"artifact\":\"$ID\"}}" 3>"$DATA/t_hit")
echo "== buyer asks WITHOUT the cache (the whole document + question prefilled cold)"
FULL=$(python3 -c 'import json,sys; print(json.dumps(json.loads(sys.argv[1])+json.loads(sys.argv[2])))' "$PREFIX" "$QUESTION")
COLD=$(ask "{\"model\":\"kvmart\",\"messages\":$FULL,\"max_tokens\":24,\"temperature\":0,\"kvmart_debug\":true}" 3>"$DATA/t_cold")
BAL1=$(call GET /v1/accounts/me "$BUYER" | field balance.micros)

set +e
python3 - "$HIT" "$COLD" "$QUOTE" "$(cat "$DATA/t_hit")" "$(cat "$DATA/t_cold")" "$BAL0" "$BAL1" <<'PY'
import json, sys
hit, cold, quote = (json.loads(x) for x in sys.argv[1:4])
t_hit, t_cold, bal0, bal1 = float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
dh, dc = hit["kvmart_debug"], cold["kvmart_debug"]
same_tokens = dh["completion_token_ids"] == dc["completion_token_ids"]
same_logits = dh["logits_sha256"] == dc["logits_sha256"]
ku = hit["kv_usage"]
price = ku["price"]["micros"]; avoided = ku["prefill_cost_avoided"]["micros"]
print()
print("  (the model is synthetic — random weights — so the text is noise; what matters is that it is identical)")
print(f"  answer (with cache):    {hit['choices'][0]['message']['content']!r}")
print(f"  answer (without cache): {cold['choices'][0]['message']['content']!r}")
print(f"  prompt tokens {hit['usage']['prompt_tokens']}, cached {hit['usage']['prompt_tokens_details']['cached_tokens']} "
      f"(prefilled {ku['tokens_prefilled']} instead of {cold['usage']['prompt_tokens']})")
print(f"  time to first token: {dh['ttft_seconds']:.3f} s with the cache vs {dc['ttft_seconds']:.3f} s cold "
      f"({dc['ttft_seconds']/max(dh['ttft_seconds'],1e-9):.1f}x); request wall {t_hit:.2f} s vs {t_cold:.2f} s")
print(f"  paid {price/1e6:.6f} USD for the load (ledger moved {(bal0-bal1)/1e6:.6f}); a fresh prefill of the "
      f"document is worth {avoided/1e6:.6f} USD -> saved {(avoided-price)/1e6:.6f} USD per question")
print(f"  receipt {ku['receipt']['receipt_id']} signed by provider key {ku['receipt']['provider_key'][:16]}...")
print(f"  outputs identical: tokens {'YES' if same_tokens else 'NO'}, logits (SHA-256 of every step) "
      f"{'YES' if same_logits else 'NO'}")
sys.exit(0 if same_tokens and same_logits and bal0 - bal1 == price else 1)
PY
STATUS=$?
if [ "$KEEP" = 1 ]; then
  echo
  echo "server left running at $URL (pid $SERVER); admin key: $DATA/admin.key, log: $DATA/server.log"
  echo "try:  curl -s $URL/v1/models     stop: kill $SERVER"
else
  echo "== stopping the server (SIGTERM: in-flight requests finish, then exit 0)"
fi
exit $STATUS
