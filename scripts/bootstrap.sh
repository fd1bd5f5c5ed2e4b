#!/usr/bin/env bash
# Set up the locked environment in .venv. Needs only python3 (3.11+) and git.
# Arguments go to 'uv sync' (scripts/demo.sh passes --no-dev --inexact).
set -euo pipefail
# Trust the system's certificate store (as pip does), not only uv's bundled roots.
export UV_NATIVE_TLS="${UV_NATIVE_TLS:-1}"
cd "$(dirname "$0")/.."
UV_VERSION=0.13.9
if command -v uv >/dev/null 2>&1; then
    UV=uv
elif [ -x .tools/bin/uv ]; then
    UV=.tools/bin/uv
else
    echo "bootstrap: installing uv ${UV_VERSION} into .tools/ (once)" >&2
    if ! python3 -m venv .tools >/dev/null 2>&1; then
        rm -rf .tools
        echo "bootstrap: error: 'python3 -m venv' is unavailable; on Debian/Ubuntu run" \
             "'apt-get install python3-venv' and try again" >&2
        exit 1
    fi
    .tools/bin/pip install --quiet --disable-pip-version-check "uv==${UV_VERSION}"
    UV=.tools/bin/uv
fi
"$UV" sync --frozen --quiet "$@"
