#!/usr/bin/env bash
# require.sh PROGRAM... -- COMMAND [ARGS...]
# Runs COMMAND when every PROGRAM is on PATH. `make setup` installs all the
# programs tests use; when one is missing the test fails and says so, instead
# of being left out of the suite.
set -uo pipefail
missing=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
  command -v "$1" >/dev/null 2>&1 || missing+=("$1")
  shift
done
[ "${1:-}" = "--" ] && shift
if [ ${#missing[@]} -gt 0 ]; then
  echo "error: this test needs ${missing[*]}, not found on PATH; run \`make setup\` (scripts/setup.sh installs it)" >&2
  exit 1
fi
exec "$@"
