#!/usr/bin/env bash
# One command on a fresh machine: install what is needed, then run the demo guest on the best
# hypervisor available (KVM when /dev/kvm is usable, sim otherwise). Extra arguments go to the
# demo, e.g. `bash scripts/demo.sh --hypervisor sim`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec pnpm --silent demo "$@"
