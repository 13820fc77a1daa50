#!/usr/bin/env bash
# `kvmart market audit`: exit 0 on a sound ledger, non-zero naming the first
# violation on a corrupted one; `payout` and `bill-storage` through the CLI.
set -euo pipefail
KVMART=$1
D=$(mktemp -d)
trap 'rm -rf "$D"' EXIT
ADMIN=$("$KVMART" market init --data "$D" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["admin_key"])')
PUB=$("$KVMART" market account create --data "$D" --key "$ADMIN" --name pub --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["account"])')
"$KVMART" market deposit --data "$D" --key "$ADMIN" --account "$PUB" --amount 5 --idem d1 > /dev/null
"$KVMART" market payout --data "$D" --key "$ADMIN" --account "$PUB" --amount 2 --destination bank --idem p1 > /dev/null
# Same key again: replayed, nothing moves.
"$KVMART" market payout --data "$D" --key "$ADMIN" --account "$PUB" --amount 2 --destination bank --idem p1 > /dev/null
BAL=$("$KVMART" market balance --data "$D" --key "$ADMIN" --account "$PUB" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["balance"]["micros"])')
[ "$BAL" = 3000000 ] || { echo "balance $BAL after one payout, want 3000000"; exit 1; }
# More than available: refused.
if "$KVMART" market payout --data "$D" --key "$ADMIN" --account "$PUB" --amount 4 --destination bank 2> "$D/err"; then
  echo "an over-large payout succeeded"; exit 1
fi
grep -q "exceeds the available" "$D/err"
"$KVMART" market bill-storage --data "$D" --json > /dev/null
"$KVMART" market audit --data "$D" | grep -q "audit ok"
python3 - "$D/market.db" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
c.execute("UPDATE entries SET amount = amount + 1 WHERE id = (SELECT MIN(id) FROM entries)")
c.commit()
PY
if "$KVMART" market audit --data "$D" 2> "$D/err"; then echo "audit passed a corrupted ledger"; exit 1; fi
grep -q "does not balance" "$D/err"
echo "cli audit ok"
