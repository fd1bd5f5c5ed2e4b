#!/usr/bin/env bash
# Build (once) the cached Debian bookworm roots the system-provider tests run in (the
# plain root, and its rpm/dnf variant).
# Idempotent and safe to run next to a test run: the build is guarded by a file lock.
# Cache: ${STEWARD_TEST_CACHE:-/var/cache/steward-tests}; --rebuild forces a new build.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m tests.engine.providers.debian_root "$@"
exec .venv/bin/python -m tests.engine.providers.rpm_root "$@"
