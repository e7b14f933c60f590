#!/usr/bin/env bash
# Installs llama.cpp as the independent reference of Kiln's llama.cpp compatibility tests: the npm package
# node-llama-cpp and its prebuilt Linux x64 CPU libraries (pinned in tools/llamacpp-reference/package-lock.json),
# without its optional CUDA/Vulkan builds and without running install scripts (nothing is compiled or downloaded
# besides the locked packages). Then checks that llama.cpp loads the built-in model. Exits non-zero on failure;
# the tests that need the reference skip themselves when it is not installed.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=tools/llamacpp-reference
timeout_s=${KILN_NPM_TIMEOUT:-600}

fail() { echo "install-llamacpp-reference: error: $*" >&2; exit 1; }

[[ "$(uname -s)-$(uname -m)" == "Linux-x86_64" ]] || fail "the pinned llama.cpp binaries are for Linux x86-64, not $(uname -s) $(uname -m)"
command -v node >/dev/null || fail "node not found (Node.js 20 or later is needed)"
command -v npm >/dev/null || fail "npm not found"
node_major=$(node -p 'process.versions.node.split(".")[0]')
(( node_major >= 20 )) || fail "node $(node --version) is too old; node-llama-cpp needs Node.js 20 or later"

echo "install-llamacpp-reference: npm ci in $dir (node $(node --version), npm $(npm --version 2>/dev/null), timeout ${timeout_s} s)"
(cd "$dir" && timeout "$timeout_s" npm ci --omit=optional --ignore-scripts --no-audit --no-fund) \
    || fail "npm ci failed or timed out in $dir"

echo "install-llamacpp-reference: checking that llama.cpp loads models/kiln-shakespeare-q8_0.gguf"
check=$(timeout 120 node "$dir/greedy.mjs" models/kiln-shakespeare-q8_0.gguf "ROMEO:" 4) \
    || fail "llama.cpp did not run the built-in model"
echo "install-llamacpp-reference: llama.cpp greedy: $check"
echo "install-llamacpp-reference: installed $(node -p "require('./$dir/node_modules/node-llama-cpp/package.json').version" 2>/dev/null || echo '?') in $dir/node_modules ($(du -sh "$dir/node_modules" | cut -f1))"
