#!/usr/bin/env bash
# Build (once) the cached Debian bookworm root the system-provider tests run in.
# Idempotent and safe to run next to a test run: the build is guarded by a file lock.
# Cache: ${STEWARD_TEST_CACHE:-/var/cache/steward-tests}; --rebuild forces a new build.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m tests.engine.system.debian_root "$@"
