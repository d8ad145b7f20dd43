#!/usr/bin/env bash
# One command on a fresh machine: install what is needed (pnpm, the workspace's packages, and
# the Debian packages the Xen lab boots from), then build, typecheck, lint and run every test:
# unit and property tests, the sim and KVM conformance suites and guest tests on /dev/kvm, the
# quick fuzz run, and the Xen backend's tests inside the Xen lab.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
step() { printf '\n== %s (%ss)\n' "$*" "$((SECONDS - started))" >&2; }

step bootstrap
bash scripts/bootstrap.sh
step "xen lab packages"
pnpm --silent xen-lab build >/dev/null
step build
pnpm build
step typecheck
pnpm typecheck
step lint
pnpm lint
step "tests (unit, property, sim, KVM, fuzz quick run)"
pnpm test
step "conformance on sim and KVM"
pnpm --silent conformance --backend sim
pnpm --silent conformance --backend kvm
step "Xen lab: backend tests and conformance inside dom0"
pnpm --silent xen-lab test
pnpm --silent xen-lab conformance --backend xen --json
step "done"
