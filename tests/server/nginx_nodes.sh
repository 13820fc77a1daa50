#!/usr/bin/env bash
# The deployment of docs/DEPLOY.md, run as written on loopback: PostgreSQL for
# the ledger and the catalog, a 3-master Redis Cluster for the blocks, two
# kvmart nodes, nginx in front with deploy/nginx/kvmart.conf.
#   nginx_nodes.sh KVMART MODEL_DIR POSTGRES_SH REDIS_SH NGINX_CONF
#
# - an artifact published on node a is bought on b and loaded on b from the
#   shared block tier, bit-exact against b's own prefill of the same tokens;
# - through nginx, every request about one artifact reaches one node (the
#   header clients set, or the id in the path);
# - 16 concurrent clients through nginx across both nodes: every answer is
#   200, bit-exact, and the ledger balances to the micro-dollar against the
#   loads that were answered from the cache;
# - a Redis master is SIGKILLed while b loads artifacts published on a: every
#   load still answers bit-exactly (from the promoted replica or, while the
#   tier cannot answer, by a prefill that the usage reports as uncached and
#   that is not charged), and the ledger matches the cached answers;
# - `kvmart market audit` replays the shared ledger clean.
set -euo pipefail
KVMART=$1 MODEL=$2 PGSH=$3 REDISSH=$4 NGINX_CONF=$5
W=$(mktemp -d "${TMPDIR:-/tmp}/kvmart-nginx-XXXXXX")
# shellcheck source=nodes_lib.sh
. "$(dirname "$0")/nodes_lib.sh"
STOPS+=("\"$PGSH\" stop \"$W/pg\"" "\"$REDISSH\" stop \"$W/redis\"")

# 1. The back ends (DEPLOY.md: a database, a cluster).
"$PGSH" start "$W/pg" >/dev/null
"$REDISSH" start "$W/redis" >/dev/null
export KVMART_DB KVMART_BLOCKS
KVMART_DB=$(cat "$W/pg/url")
KVMART_BLOCKS=$(cat "$W/redis/url")

# 2. The schema, once.
mkdir -p "$W/a" "$W/b"
"$KVMART" admin migrate --data "$W/a" >/dev/null || fail "migrate"

# 3. The nodes: the first makes the provider key, the second gets a copy.
start_node a || fail "node a did not start"
install -m 0600 "$W/a/provider.key" "$W/b/provider.key"
start_node b || fail "node b did not start"
A=$(node_url a)
B=$(node_url b)
ADMIN=$(cat "$W/a/admin.key")
for n in "$A" "$B"; do
  [ "$(code "$n/readyz")" = 200 ] || fail "readyz on $n: $(cat "$W/body")"
  jq -e '.backends.store.ok == true and (.backends.store.backend | test("postgresql.*redis-cluster"))' \
    "$W/body" >/dev/null || fail "readyz does not report the shared store: $(cat "$W/body")"
done

# 4. nginx with the shipped configuration; only the listen port and where the
# node list lives are this test's.
mkdir -p "$W/nginx/conf" "$W/nginx/tmp"
NGINX_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
printf 'server 127.0.0.1:%s;\nserver 127.0.0.1:%s;\n' "$(cat "$W/a/port")" "$(cat "$W/b/port")" >"$W/nginx/conf/nodes.conf"
sed -e "s|listen 8080;|listen 127.0.0.1:$NGINX_PORT;|" -e "s|/etc/kvmart/nodes.conf|$W/nginx/conf/nodes.conf|" \
  "$NGINX_CONF" >"$W/nginx/conf/kvmart.conf"
grep -q "listen 127.0.0.1:$NGINX_PORT;" "$W/nginx/conf/kvmart.conf" || fail "the configuration has no 'listen 8080;'"
cat >"$W/nginx/conf/nginx.conf" <<CONF
daemon off;
worker_processes 1;
pid $W/nginx/nginx.pid;
error_log $W/nginx/error.log;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path $W/nginx/tmp/body;
  proxy_temp_path $W/nginx/tmp/proxy;
  fastcgi_temp_path $W/nginx/tmp/fastcgi;
  uwsgi_temp_path $W/nginx/tmp/uwsgi;
  scgi_temp_path $W/nginx/tmp/scgi;
  include $W/nginx/conf/kvmart.conf;
}
CONF
nginx -t -p "$W/nginx" -c "$W/nginx/conf/nginx.conf" 2>"$W/nginx/check" || fail "nginx -t: $(cat "$W/nginx/check")"
nginx -p "$W/nginx" -c "$W/nginx/conf/nginx.conf" &
PIDS+=($!)
N="http://127.0.0.1:$NGINX_PORT"
for _ in $(seq 1 100); do [ "$(code "$N/readyz")" = 200 ] && break; sleep 0.1; done
[ "$(code "$N/readyz")" = 200 ] || fail "nginx does not answer: $(cat "$W/nginx/error.log")"

# Accounts, through the balancer.
[ "$(code "$N/v1/accounts" -H "Authorization: Bearer $ADMIN" -H "Idempotency-Key: acct-pub" \
  -d '{"name":"publisher","scopes":"publish"}')" = 201 ] || fail "publisher account: $(cat "$W/body")"
PUB=$(jq -r .api_key "$W/body")
[ "$(code "$N/v1/accounts" -H "Authorization: Bearer $ADMIN" -H "Idempotency-Key: acct-buy" \
  -d '{"name":"buyer","scopes":"buy"}')" = 201 ] || fail "buyer account: $(cat "$W/body")"
BUYER=$(jq -r .api_key "$W/body")
BUYER_ID=$(jq -r .account_id "$W/body")
[ "$(code "$N/v1/accounts/$BUYER_ID/deposits" -H "Authorization: Bearer $ADMIN" -H "Idempotency-Key: dep-1" \
  -d '{"amount":"1.00"}')" = 201 ] || fail "deposit: $(cat "$W/body")"
balance() {
  [ "$(code "$N/v1/accounts/me" -H "Authorization: Bearer $BUYER")" = 200 ] || fail "balance: $(cat "$W/body")"
  jq -r .balance.micros "$W/body"
}

publish() {  # node key text -> artifact id
  local got
  got=$(code "$1/v1/artifacts" -H "Authorization: Bearer $PUB" -H "Idempotency-Key: pub-$2" -d '{
    "messages": [{"role": "system", "content": "You answer questions about the document."},
                 {"role": "user", "content": "Document: '"$3"'"}],
    "price": {"per_load": "0.002"}}')
  [ "$got" = 201 ] || fail "publish $2 on $1: HTTP $got $(cat "$W/body")"
  jq -r .artifact_id "$W/body"
}
# ask NODE ARTIFACT QUESTION [header…]: a greedy answer from the artifact,
# with its token ids and logits digest (kvmart_debug); the reply in $W/body.
ask() {
  local node=$1 art=$2 q=$3
  shift 3
  code "$node/v1/chat/completions" -H "Authorization: Bearer $BUYER" "$@" -d '{"max_tokens":3,"temperature":0,
    "kvmart_debug":true,"kv":{"artifact":"'"$art"'"},"messages":[{"role":"user","content":"'"$q"'"}]}'
}
# The same tokens prefilled from scratch on NODE: its logits digest.
scratch_digest() {  # node reply-file
  local ids
  ids=$(jq -c .kvmart_debug.prompt_token_ids "$2")
  [ "$(code "$1/v1/completions" -H "Authorization: Bearer $BUYER" -d '{"prompt":'"$ids"',"max_tokens":3,
    "temperature":0,"kvmart_debug":true}')" = 200 ] || fail "scratch prefill on $1: $(cat "$W/body")"
  jq -e '.kvmart_debug.tokens_reused == 0' "$W/body" >/dev/null || fail "the scratch prefill reused KV"
  jq -r .kvmart_debug.logits_sha256 "$W/body"
}

# 5. Publish on a, buy and load on b: b reads the blocks from the shared tier.
ART=$(publish "$A" 1 "The river Mira rises in the hills and runs 140 km west to the sea.")
[ "$(code "$B/v1/artifacts/$ART/purchase" -H "Authorization: Bearer $BUYER" -H "Idempotency-Key: buy-1" \
  -d '{"kind":"metered","quantity":100}')" = 201 ] || fail "purchase on b: $(cat "$W/body")"
[ "$(ask "$B" "$ART" "How long is the river?")" = 200 ] || fail "load on b: $(cat "$W/body")"
cp "$W/body" "$W/cross.json"
jq -e '.kvmart_debug.tokens_reused > 0' "$W/cross.json" >/dev/null || fail "b did not load the artifact: $(cat "$W/cross.json")"
[ "$(jq -r .kvmart_debug.logits_sha256 "$W/cross.json")" = "$(scratch_digest "$B" "$W/cross.json")" ] ||
  fail "the load on b differs from b's prefill of the same tokens"
shared=$(metric "$B" 'kvmart_store_block_hits_total{tier="shared"}')
[ "$shared" -ge 1 ] || fail "b counted no block from the shared tier"
[ "$(metric "$B" kvmart_store_shared_commands_total)" -ge 1 ] || fail "b counted no shared-tier commands"
LOADS=1

# 6. Routing: one artifact, one node.
nodes_for() {  # art: the nodes nginx sent 6 requests about it to
  for i in 1 2 3 4 5 6; do
    curl -s -o /dev/null -D - "$N/v1/artifacts/$1" -H "Authorization: Bearer $BUYER" |
      tr -d '\r' | awk -F': ' 'tolower($1) == "x-kvmart-node" { print $2 }'
    curl -s -o /dev/null -D - "$N/v1/models" -H "X-Kvmart-Artifact: $1" |
      tr -d '\r' | awk -F': ' 'tolower($1) == "x-kvmart-node" { print $2 }'
  done | sort -u
}
ART2=$(publish "$B" 2 "The lighthouse at Kell was built in 1871 and is 31 m tall.")
ART3=$(publish "$A" 3 "The orchard holds 412 apple trees and 58 pear trees.")
seen=""
for art in "$ART" "$ART2" "$ART3"; do
  got=$(nodes_for "$art")
  [ "$(echo "$got" | wc -l)" = 1 ] && [ -n "$got" ] || fail "requests about $art reached several nodes: $got"
  seen="$seen$got"$'\n'
done
# Requests about no artifact spread over both.
spread=$(for i in $(seq 1 24); do
  curl -s -o /dev/null -D - "$N/v1/models" | tr -d '\r' | awk -F': ' 'tolower($1) == "x-kvmart-node" { print $2 }'
done | sort -u | wc -l)
[ "$spread" = 2 ] || fail "requests about no artifact reached $spread node(s), want 2"
for art in "$ART2" "$ART3"; do
  [ "$(code "$N/v1/artifacts/$art/purchase" -H "Authorization: Bearer $BUYER" -H "Idempotency-Key: buy-$art" \
    -d '{"kind":"metered","quantity":100}')" = 201 ] || fail "purchase of $art: $(cat "$W/body")"
done

# The digests every answer must have: each artifact's question prefilled from
# scratch (asked once through nginx, which routes it to its node).
declare -A WANT
for art in "$ART" "$ART2" "$ART3"; do
  [ "$(ask "$N" "$art" "What number is in the document?" -H "X-Kvmart-Artifact: $art")" = 200 ] ||
    fail "ask $art: $(cat "$W/body")"
  cp "$W/body" "$W/first-$art.json"
  WANT[$art]=$(scratch_digest "$B" "$W/first-$art.json")
  [ "$(jq -r .kvmart_debug.logits_sha256 "$W/first-$art.json")" = "${WANT[$art]}" ] || fail "$art: hit differs from prefill"
  LOADS=$((LOADS + 1))
done

# 7. 16 concurrent clients through nginx.
client() {  # index rounds
  local arts=("$ART" "$ART2" "$ART3") i=$1 r
  for r in $(seq 1 "$2"); do
    local art=${arts[$(((i + r) % 3))]}
    curl -s -o "$W/c-$i-$r.json" -w '%{http_code}\n' "$N/v1/chat/completions" -H "Authorization: Bearer $BUYER" \
      -H "X-Kvmart-Artifact: $art" -d '{"max_tokens":3,"temperature":0,"kvmart_debug":true,
      "kv":{"artifact":"'"$art"'"},"messages":[{"role":"user","content":"What number is in the document?"}]}' \
      >>"$W/c-$i.codes"
    echo "$art" >>"$W/c-$i.arts"
  done
}
run_clients() {  # rounds
  local pids=() i
  for i in $(seq 1 16); do client "$i" "$1" & pids+=($!); done
  for p in "${pids[@]}"; do wait "$p"; done
}
check_clients() {  # rounds -> adds the cache-answered loads to LOADS
  local i r art
  for i in $(seq 1 16); do
    [ "$(grep -c '^200$' "$W/c-$i.codes")" = "$1" ] || fail "client $i: $(sort "$W/c-$i.codes" | uniq -c | tr '\n' ' ')"
    for r in $(seq 1 "$1"); do
      art=$(sed -n "${r}p" "$W/c-$i.arts")
      [ "$(jq -r .kvmart_debug.logits_sha256 "$W/c-$i-$r.json")" = "${WANT[$art]}" ] ||
        fail "client $i round $r ($art): logits differ from the prefill"
      # A load answered from the cache is charged; one that fell back to a
      # prefill says so (no reused tokens) and is not.
      if jq -e '.usage.prompt_tokens_details.cached_tokens > 0' "$W/c-$i-$r.json" >/dev/null; then
        LOADS=$((LOADS + 1))
      fi
    done
    rm -f "$W/c-$i".* "$W/c-$i"-*.json
  done
}
run_clients 2
check_clients 2
[ "$(balance)" = $((1000000 - 2000 * LOADS)) ] || fail "balance $(balance) after $LOADS loads, want $((1000000 - 2000 * LOADS))"

# Artifacts published on a, first loaded on b (from the shared tier) while a
# master dies: b's loads run during the failover.
arts_b=()
for k in 4 5 6 7 8 9; do
  art=$(publish "$A" "$k" "Entry $k: the ferry leaves at 7:1$k and the crossing takes 9$k minutes.")
  [ "$(code "$B/v1/artifacts/$art/purchase" -H "Authorization: Bearer $BUYER" -H "Idempotency-Key: buy-$k" \
    -d '{"kind":"metered","quantity":10}')" = 201 ] || fail "purchase of $art: $(cat "$W/body")"
  arts_b+=("$art")
done
"$REDISSH" kill-master "$W/redis" 0 >"$W/killed" &
KILL=$!
for art in "${arts_b[@]}"; do
  [ "$(ask "$B" "$art" "When does the ferry leave?")" = 200 ] || fail "load of $art on b during the failover: $(cat "$W/body")"
  cp "$W/body" "$W/during.json"
  [ "$(jq -r .kvmart_debug.logits_sha256 "$W/during.json")" = "$(scratch_digest "$B" "$W/during.json")" ] ||
    fail "a load during the failover differs from the prefill"
  jq -e '.usage.prompt_tokens_details.cached_tokens > 0' "$W/during.json" >/dev/null && LOADS=$((LOADS + 1))
  sleep 0.3
done
wait "$KILL" || fail "kill-master"
[ -s "$W/killed" ] || fail "no master was killed"
run_clients 1
check_clients 1
[ "$(balance)" = $((1000000 - 2000 * LOADS)) ] || fail "balance $(balance) after $LOADS loads, want $((1000000 - 2000 * LOADS))"
fallbacks=$(metric "$B" 'kvmart_store_shared_errors_total')
echo "nginx_nodes: shared-tier errors on b during the failover: $fallbacks"

"$KVMART" market audit --data "$W/a" | grep -q "audit ok" || fail "audit of the shared ledger"
echo "nginx_nodes: publish on a, load on b bit-exact from the shared tier; one node per artifact through nginx; 16 clients and a Redis master killed: $LOADS loads charged once each, every answer bit-exact"
