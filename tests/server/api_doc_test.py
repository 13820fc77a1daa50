#!/usr/bin/env python3
"""Executes every ```sh block of docs/API.md, in order, in one bash session
against a live server (KVMART_URL, KVMART_ADMIN_KEY from with_server.sh).

A block fenced as ```sh expect=NNN must answer HTTP NNN on every curl call in it;
any other block must answer 2xx. curl is wrapped by a shell function that checks
the status and prints the body, so the examples stay plain curl commands."""
import os
import re
import subprocess
import sys
import tempfile

PRELUDE = r'''
set -euo pipefail
curl() {
  local body code
  body=$(mktemp)
  code=$(command curl -sS -o "$body" -w '%{http_code}' "$@") || { rm -f "$body"; return 1; }
  cat "$body"; rm -f "$body"
  if [ "$EXPECT" = 2xx ]; then
    case "$code" in 2??) ;; *) echo "api_doc: HTTP $code, expected 2xx: curl $*" >&2; return 1 ;; esac
  elif [ "$code" != "$EXPECT" ]; then
    echo "api_doc: HTTP $code, expected $EXPECT: curl $*" >&2; return 1
  fi
}
'''


def main():
    doc_path, kvmart_dir = sys.argv[1], sys.argv[2]
    text = open(doc_path, encoding="utf-8").read()
    blocks = re.findall(r"^```sh( expect=(\d{3}))?\n(.*?)^```", text, re.S | re.M)
    if len(blocks) < 10:
        sys.exit(f"api_doc: only {len(blocks)} sh blocks found in {doc_path}")
    script = [PRELUDE]
    for i, (_, expect, body) in enumerate(blocks):
        script.append(f'echo "----- block {i + 1} (expect {expect or "2xx"})"\nEXPECT={expect or "2xx"}\n{body}\necho\n')
    env = dict(os.environ, PATH=kvmart_dir + os.pathsep + os.environ["PATH"])
    with tempfile.TemporaryDirectory() as cwd:
        r = subprocess.run(["bash", "-c", "\n".join(script)], cwd=cwd, env=env)
    routes = set(re.findall(r"\$KVMART_URL(/[a-z0-9/]*)", text))
    print(f"api_doc: {len(blocks)} blocks, {len(routes)} distinct URL paths exercised")
    sys.exit(r.returncode)


if __name__ == "__main__":
    main()
