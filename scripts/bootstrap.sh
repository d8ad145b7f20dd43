#!/usr/bin/env bash
# Installs what every vmed command needs on a fresh machine with only Node 20 and npm:
# pnpm 10 (corepack cannot fetch it here) and the workspace's packages from the lockfile.
# Safe to run again: it does nothing that is already done.
set -euo pipefail
cd "$(dirname "$0")/.."

PNPM_VERSION=10.34.9
if ! command -v pnpm >/dev/null 2>&1 || [[ "$(pnpm --version 2>/dev/null)" != 10.* ]]; then
  echo "bootstrap: installing pnpm@${PNPM_VERSION} with npm" >&2
  npm install --global --no-fund --no-audit "pnpm@${PNPM_VERSION}" >&2
fi

if [[ ! -d node_modules/.pnpm ]] || [[ pnpm-lock.yaml -nt node_modules/.modules.yaml ]]; then
  echo "bootstrap: installing workspace packages (pnpm install --frozen-lockfile)" >&2
  pnpm install --frozen-lockfile >&2
fi
