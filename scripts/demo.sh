#!/usr/bin/env bash
# Set up, then run Steward's main job on the embedded defaults (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh --no-dev --inexact
exec .venv/bin/steward demo "$@"
