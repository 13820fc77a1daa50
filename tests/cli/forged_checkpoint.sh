#!/usr/bin/env bash
# A forgery only recomputation catches (docs/SECURITY.md, "Spot checks"):
# copy a checkpoint, change one weight in place (same size), give the file its
# old mtime back — the cached weights digest (keyed by size and mtime) still
# names the original — and publish. The artifact is validly signed, claims the
# served model's profile and passes every checksum, so `kvmart verify` accepts
# it; `--spot-check` and `--recompute` prove it false (exit 2).
#   forged_checkpoint.sh KVMART MODEL_DIR
set -euo pipefail
KVMART=$1 MODEL=$2
W=$(mktemp -d "${TMPDIR:-/tmp}/kvmart-forged-XXXXXX")
trap 'rm -rf "$W"' EXIT
export HOME="$W/home"   # the publisher key is created there
fail() { echo "forged_checkpoint: FAILED: $*" >&2; exit 1; }

seq 1 400 | tr '\n' ' ' >"$W/doc.txt"
# The honest model's digest is computed and cached first.
"$KVMART" publish --model "$MODEL" --doc "$W/doc.txt" --out "$W/honest.kva" --block-size 32 \
  2>/dev/null >/dev/null || fail "honest publish"
"$KVMART" verify "$W/honest.kva" --model "$MODEL" --spot-check 3 >"$W/honest.out" || fail "the honest artifact: $(cat "$W/honest.out")"

cp -a "$MODEL" "$W/forged-model"
python3 - "$W/forged-model/model.safetensors" <<'PY'
import json, struct, sys
path = sys.argv[1]
with open(path, "r+b") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    header = json.loads(f.read(n))
    begin, _ = header["model.layers.0.self_attn.k_proj.weight"]["data_offsets"]
    at = 8 + n + begin + 1          # the high byte of the first bf16 weight
    f.seek(at)
    b = f.read(1)[0]
    f.seek(at)
    f.write(bytes([b ^ 0x01]))      # its lowest exponent bit: the weight doubles or halves
PY
touch -r "$MODEL/model.safetensors" "$W/forged-model/model.safetensors"
cmp -s "$MODEL/model.safetensors" "$W/forged-model/model.safetensors" && fail "the copy was not changed"

"$KVMART" publish --model "$W/forged-model" --doc "$W/doc.txt" --out "$W/forged.kva" --block-size 32 \
  2>/dev/null >/dev/null || fail "forged publish"
cmp -s "$W/honest.kva" "$W/forged.kva" && fail "the forged artifact equals the honest one"

# Today's checks: signature, profile, XXH3-128 and SHA-256 of every block.
"$KVMART" verify "$W/forged.kva" --model "$MODEL" >"$W/plain.out" ||
  fail "the forgery was caught without recomputation, so this test no longer shows what it should: $(cat "$W/plain.out")"

set +e
"$KVMART" verify "$W/forged.kva" --model "$MODEL" --spot-check 2 --json >"$W/spot.json"
rc=$?
"$KVMART" verify "$W/forged.kva" --model "$MODEL" --recompute >"$W/full.out" 2>&1
rc_full=$?
set -e
[ "$rc" = 2 ] || fail "--spot-check 2 exited $rc, want 2: $(cat "$W/spot.json")"
python3 - "$W/spot.json" <<'PY' || fail "spot check report: $(cat "$W/spot.json")"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["kv_identical"] is False, r
assert len(r["differing_blocks"]) == len(r["checked_blocks"]) == 3, r   # layer 0 changed: every block differs
assert r["tokens_prefilled"] < r["tokens_total"], r
PY
[ "$rc_full" = 2 ] || fail "--recompute exited $rc_full, want 2: $(cat "$W/full.out")"
echo "forged_checkpoint: signed, checksummed, profile-matching forgery accepted by verify, rejected by --spot-check and --recompute"
