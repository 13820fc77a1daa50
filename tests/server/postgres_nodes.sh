#!/usr/bin/env bash
# Two `kvmart serve` nodes on one PostgreSQL market, and a database outage.
#   postgres_nodes.sh KVMART MODEL_DIR POSTGRES_SH
#
# - `kvmart admin migrate` on an empty database: --check says a migration is
#   due (exit 3), the migration runs once, --check then passes;
# - node A and node B share the provider key and the ledger: an account made
#   on A is funded on B, an idempotent retry on A moves nothing;
# - a node with another provider key is refused at start;
# - PostgreSQL stops: calls that need the ledger get 503 and /readyz says the
#   market is unavailable; a deposit attempted meanwhile moves nothing;
#   PostgreSQL starts again: both nodes serve again without a restart, and the
#   deposit retried under its idempotency key is booked once;
# - a node SIGKILLed while it streams an answer from a bought artifact leaves
#   no charge: its hold expires and the other node voids it;
# - `kvmart market audit --db` replays the shared ledger clean.
# The test owns its PostgreSQL server (tests/testing/postgres.sh), because it
# stops it.
set -euo pipefail
KVMART=$1 MODEL=$2 PGSH=$3
W=$(mktemp -d "${TMPDIR:-/tmp}/kvmart-pgnodes-XXXXXX")
# shellcheck source=nodes_lib.sh
. "$(dirname "$0")/nodes_lib.sh"
STOPS+=("\"$PGSH\" stop \"$W/pg\"")

"$PGSH" start "$W/pg" >/dev/null
DB=$(cat "$W/pg/url")
mkdir -p "$W/a" "$W/b" "$W/c"

set +e
"$KVMART" admin migrate --db "$DB" --data "$W/a" --check >"$W/check1" 2>&1
rc=$?
set -e
[ "$rc" -eq 3 ] || fail "migrate --check on an empty database exited $rc, want 3: $(cat "$W/check1")"
"$KVMART" admin migrate --db "$DB" --data "$W/a" | grep -q "migrated schema 0 -> 5" || fail "migrate did not migrate"
"$KVMART" admin migrate --db "$DB" --data "$W/a" --check | grep -q "schema is current" || fail "migrate --check after migrating"

# Holds expire after 3 s and each node sweeps every second, so a killed
# node's hold is voided within the test.
NODE_FLAGS=(--db "$DB" --load-reservation-seconds 3 --market-maintenance-interval 1)
start_node a "${NODE_FLAGS[@]}" || fail "node a did not start"
A="http://127.0.0.1:$(cat "$W/a/port")"
ADMIN=$(cat "$W/a/admin.key")

# A third node with its own provider key would sign receipts the ledger's
# key does not vouch for: refused.
if "$KVMART" serve --model "$MODEL" --data "$W/c" --db "$DB" --listen 127.0.0.1:0 --threads 1 >"$W/c/log" 2>&1; then
  fail "a node with another provider key started"
fi
grep -q "provider" "$W/c/log" || fail "the refusal does not name the provider key: $(tail -2 "$W/c/log")"

cp "$W/a/provider.key" "$W/b/provider.key"
start_node b "${NODE_FLAGS[@]}" || fail "node b did not start"
B="http://127.0.0.1:$(cat "$W/b/port")"

# A created resource is 201, its idempotent replay 200.
deposit() {  # node idempotency-key amount
  local got
  got=$(code "$1/v1/accounts/$BUYER_ID/deposits" -H "Authorization: Bearer $ADMIN" -H "Idempotency-Key: $2" \
    -d "{\"amount\":\"$3\"}")
  [ "$got" = 200 ] || [ "$got" = 201 ] || { echo "$got"; return 1; }
}

[ "$(code "$A/readyz")" = 200 ] || fail "readyz on a: $(cat "$W/body")"
jq -e '.backends.market.ok == true and (.backends.market.backend | startswith("postgresql "))' "$W/body" >/dev/null ||
  fail "readyz does not report the PostgreSQL market: $(cat "$W/body")"
grep -q '\*\*\*\|postgres@' "$W/body" && ! grep -q 'password' "$W/body" || fail "readyz body: $(cat "$W/body")"

[ "$(code "$A/v1/accounts" -H "Authorization: Bearer $ADMIN" -H "Idempotency-Key: acct-1" \
  -d '{"name":"buyer","scopes":"buy"}')" = 201 ] || fail "account on a: $(cat "$W/body")"
BUYER=$(jq -r .api_key "$W/body")
BUYER_ID=$(jq -r .account_id "$W/body")

deposit "$B" dep-1 5.00 || fail "deposit on b: $(cat "$W/body")"
# The same deposit retried through the other node: a replay.
deposit "$A" dep-1 5.00 || fail "replayed deposit on a: $(cat "$W/body")"
balance() {  # node
  [ "$(code "$1/v1/accounts/me" -H "Authorization: Bearer $BUYER")" = 200 ] || fail "balance on $1: $(cat "$W/body")"
  jq -r .balance.micros "$W/body"
}
[ "$(balance "$A")" = 5000000 ] || fail "balance on a is $(balance "$A"), want 5000000"
[ "$(balance "$B")" = 5000000 ] || fail "balance on b is $(balance "$B"), want 5000000"

# The database goes away.
"$PGSH" pause "$W/pg"
got=$(code "$A/v1/accounts/me" -H "Authorization: Bearer $BUYER")
[ "$got" = 503 ] || fail "balance during the outage: HTTP $got, want 503: $(cat "$W/body")"
jq -e '.error.type == "unavailable"' "$W/body" >/dev/null || fail "outage error body: $(cat "$W/body")"
got=$(code "$B/v1/accounts/$BUYER_ID/deposits" -H "Authorization: Bearer $ADMIN" -H "Idempotency-Key: dep-2" \
  -d '{"amount":"1.00"}')
[ "$got" = 503 ] || fail "deposit during the outage: HTTP $got, want 503: $(cat "$W/body")"
got=$(code "$B/readyz")
[ "$got" = 503 ] || fail "readyz during the outage: HTTP $got, want 503"
jq -e '.status == "unavailable" and .backends.market.ok == false' "$W/body" >/dev/null ||
  fail "readyz during the outage: $(cat "$W/body")"

# The outage is counted where operators look.
curl -s "$B/metrics" >"$W/metrics"
n=$(sed -n 's/^kvmart_market_backend_errors_total{backend="postgresql",cause="unavailable"} \([0-9]*\)$/\1/p' "$W/metrics")
[ "${n:-0}" -ge 1 ] || fail "metrics do not count the outage: $(grep kvmart_market "$W/metrics")"

# It comes back; the nodes were not restarted.
"$PGSH" resume "$W/pg"
[ "$(code "$B/readyz")" = 200 ] || fail "readyz on b after the outage: $(cat "$W/body")"
[ "$(balance "$A")" = 5000000 ] || fail "the failed deposit moved money"
deposit "$B" dep-2 1.00 || fail "deposit retried after the outage: $(cat "$W/body")"
deposit "$A" dep-2 1.00 || fail "deposit replayed after the outage: $(cat "$W/body")"
[ "$(balance "$B")" = 6000000 ] || fail "balance after the outage is $(balance "$B"), want 6000000"

# A bought artifact, one load that completes on a, then a killed node.
[ "$(code "$A/v1/accounts" -H "Authorization: Bearer $ADMIN" -H "Idempotency-Key: acct-pub" \
  -d '{"name":"publisher","scopes":"publish"}')" = 201 ] || fail "publisher account: $(cat "$W/body")"
PUB=$(jq -r .api_key "$W/body")
got=$(code "$A/v1/artifacts" -H "Authorization: Bearer $PUB" -H "Idempotency-Key: pub-1" -d '{
  "messages": [{"role": "system", "content": "You answer questions about the document."},
               {"role": "user", "content": "Document: The river Mira rises in the hills and runs 140 km west."}],
  "price": {"per_load": "0.002"}}')
[ "$got" = 201 ] || [ "$got" = 200 ] || fail "publish on a: HTTP $got $(cat "$W/body")"
ART=$(jq -r .artifact_id "$W/body")
[ "$(code "$B/v1/artifacts/$ART/purchase" -H "Authorization: Bearer $BUYER" -H "Idempotency-Key: buy-1" \
  -d '{"kind":"metered","quantity":3}')" = 201 ] || fail "purchase on b: $(cat "$W/body")"
ask() {  # node max_tokens stream
  printf '{"max_tokens":%s,"temperature":0,"stream":%s,"kv":{"artifact":"%s"},
    "messages":[{"role":"user","content":"How long is the river?"}]}' "$2" "$3" "$ART" >"$W/ask.json"
}
ask "$A" 4 false
[ "$(code "$A/v1/chat/completions" -H "Authorization: Bearer $BUYER" -d @"$W/ask.json")" = 200 ] ||
  fail "a load on a: $(cat "$W/body")"
[ "$(balance "$B")" = 5998000 ] || fail "after one load the balance is $(balance "$B"), want 5998000"

ask "$A" 400 true
curl -sN "$A/v1/chat/completions" -H "Authorization: Bearer $BUYER" -d @"$W/ask.json" >"$W/stream.txt" &
CURL=$!
for _ in $(seq 1 300); do [ "$(grep -c '^data: ' "$W/stream.txt" 2>/dev/null)" -ge 3 ] && break; sleep 0.02; done
[ "$(grep -c '^data: ' "$W/stream.txt")" -ge 3 ] || fail "the stream on a did not start: $(head -c 300 "$W/stream.txt")"
[ "$(code "$B/v1/earnings" -H "Authorization: Bearer $BUYER")" = 200 ] || fail "earnings: $(cat "$W/body")"
[ "$(jq -r .reserved.micros "$W/body")" = 2000 ] || fail "no hold while a streams: $(cat "$W/body")"
kill -KILL "${PIDS[0]}"
wait "${PIDS[0]}" 2>/dev/null || true
wait "$CURL" 2>/dev/null || true
grep -q 'data: \[DONE\]' "$W/stream.txt" && fail "the killed node finished its stream"
PIDS=("${PIDS[@]:1}")
voided=0
for _ in $(seq 1 100); do
  code "$B/v1/earnings" -H "Authorization: Bearer $BUYER" >/dev/null
  if [ "$(jq -r .reserved.micros "$W/body")" = 0 ]; then voided=1; break; fi
  sleep 0.1
done
[ "$voided" = 1 ] || fail "the killed node's hold was not voided: $(cat "$W/body")"
[ "$(balance "$B")" = 5998000 ] || fail "the lost request was charged: balance $(balance "$B")"
# Its entitlement came back: two loads left of three.
[ "$(code "$B/v1/entitlements" -H "Authorization: Bearer $BUYER")" = 200 ] || fail "entitlements: $(cat "$W/body")"
[ "$(jq -r '[.data[] | select(.artifact_id == "'"$ART"'") | .loads_remaining] | add' "$W/body")" = 2 ] ||
  fail "entitlement after the lost request: $(cat "$W/body")"

"$KVMART" market audit --db "$DB" --data "$W/a" | grep -q "audit ok" || fail "audit of the shared ledger"

for p in "${PIDS[@]}"; do kill -TERM "$p"; done
for p in "${PIDS[@]}"; do wait "$p" || fail "a node did not exit 0 after SIGTERM"; done
PIDS=()
echo "postgres_nodes: two nodes on one PostgreSQL ledger; an outage answered with 503 and recovered without a restart; a node killed mid-answer left no charge"
