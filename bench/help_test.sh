#!/usr/bin/env bash
# help_test.sh PROGRAM...: each answers --help with its usage on stdout and
# exit 0, and refuses an unknown option or a lone option without its value
# with exit 2, at once (before any benchmark work, which a 10 s limit catches).
set -uo pipefail
T=$(mktemp -d "${TMPDIR:-/tmp}/kvmart-bench-help-XXXXXX")
trap 'rm -rf "$T"' EXIT
mkdir "$T/work" && cd "$T/work"  # whatever a program might write lands here
status=0
for p in "$@"; do
  name=$(basename "$p")
  timeout 10 "$p" --help >"$T/out" 2>"$T/err"; rc=$?
  if [ $rc -ne 0 ] || ! grep -q '^usage: ' "$T/out"; then
    echo "FAIL $name --help: exit $rc, stdout: $(head -c 200 "$T/out")"; status=1
  fi
  for args in "--no-such-option" "--threads"; do
    timeout 10 "$p" $args >"$T/out" 2>"$T/err"; rc=$?
    if [ $rc -ne 2 ] || ! grep -q 'usage: ' "$T/err"; then
      echo "FAIL $name $args: exit $rc (want 2 with the usage on stderr)"; status=1
    fi
  done
  [ -z "$(ls -A)" ] || { echo "FAIL $name wrote files: $(ls -A)"; status=1; rm -rf ./* ./.??*; }
done
[ $status -eq 0 ] && echo "bench.help: $# programs OK"
exit $status
