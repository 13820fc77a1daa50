#!/usr/bin/env bash
# One data directory for every command:
#   - `market init --data D` writes D/admin.key (0600) holding the key it prints,
#     and D/provider.key (0600);
#   - `serve --data D` afterwards uses that market (admin.key still valid) and
#     keeps its store in D/store;
#   - `store ls` with KVMART_HOME=D opens the same D/store (and creates nothing
#     directly in D).
#   data_dir_layout.sh KVMART MODEL_DIR
set -euo pipefail
KVMART=$1 MODEL=$2
D=$(mktemp -d "${TMPDIR:-/tmp}/kvmart-datadir-XXXXXX")
SERVER=
cleanup() { [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null; rm -rf "$D"; }
trap cleanup EXIT
fail() { echo "data_dir_layout: FAILED: $*" >&2; exit 1; }
mode() { stat -c %a "$1"; }

"$KVMART" market init --data "$D" --json >"$D/init.json"
ADMIN=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["admin_key"])' "$D/init.json")
[ -f "$D/admin.key" ] || fail "market init wrote no admin.key"
[ "$(cat "$D/admin.key")" = "$ADMIN" ] || fail "admin.key does not hold the printed admin key"
[ "$(mode "$D/admin.key")" = 600 ] || fail "admin.key mode $(mode "$D/admin.key")"
[ "$(mode "$D/provider.key")" = 600 ] || fail "provider.key mode $(mode "$D/provider.key")"

# Amounts are decimals everywhere (--credit-limit too), and `key revoke --id`
# revokes that key (it used to be read into the account field).
ACC=$("$KVMART" market account create --data "$D" --key "$ADMIN" --name a --credit-limit 2.5 --json |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["account"])')
LIMIT=$("$KVMART" market balance --data "$D" --key "$ADMIN" --account "$ACC" --json |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["credit_limit"]["micros"])')
[ "$LIMIT" = 2500000 ] || fail "--credit-limit 2.5 gave a limit of $LIMIT micros"
"$KVMART" market key create --data "$D" --key "$ADMIN" --account "$ACC" --scopes buy --json >"$D/key.json"
read -r KEY_ID SECRET < <(python3 -c 'import json,sys; k=json.load(open(sys.argv[1])); print(k["key_id"], k["secret"])' "$D/key.json")
"$KVMART" market balance --data "$D" --key "$SECRET" >/dev/null || fail "new key does not work"
"$KVMART" market key revoke --data "$D" --key "$ADMIN" --id "$KEY_ID" >/dev/null
if "$KVMART" market balance --data "$D" --key "$SECRET" >/dev/null 2>&1; then fail "revoked key still works"; fi

"$KVMART" serve --model "$MODEL" --data "$D" --listen 127.0.0.1:0 --port-file "$D/port" --threads 1 \
  >"$D/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 1 300); do [ -s "$D/port" ] && break; sleep 0.1; done
[ -s "$D/port" ] || { cat "$D/server.log"; fail "server did not start"; }
URL="http://127.0.0.1:$(cat "$D/port")"
CODE=$(curl -s -o /dev/null -w '%{http_code}' "$URL/v1/accounts" -H "Authorization: Bearer $(cat "$D/admin.key")" \
       -d '{"name":"a","scopes":"buy"}')
[ "$CODE" = 201 ] || fail "admin.key from market init is refused by serve (HTTP $CODE)"
[ -f "$D/store/catalog.sqlite" ] || fail "serve keeps no store in D/store"
kill -TERM "$SERVER"; wait "$SERVER" || fail "server exit status $?"; SERVER=

KVMART_HOME="$D" "$KVMART" store ls >/dev/null
[ ! -e "$D/catalog.sqlite" ] || fail "store ls opened D itself instead of D/store"
"$KVMART" store ls --data "$D" >/dev/null
[ ! -e "$D/catalog.sqlite" ] || fail "store ls --data D opened D itself instead of D/store"
KVMART_HOME="$D" "$KVMART" market receipt verify --file /dev/null >/dev/null 2>"$D/verify.err" || true
grep -q 'provider.key' "$D/verify.err" && fail "market under KVMART_HOME did not find D/provider.key"
echo "data_dir_layout: OK"
