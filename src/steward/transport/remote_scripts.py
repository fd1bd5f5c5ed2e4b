"""The POSIX sh scripts a push runs on the host before the bundle: the probe (sudo,
python, is the bundle cached) and the checked upload; each failure has its own exit code."""

from __future__ import annotations

import shlex

from steward.transport.bundle import Bundle
from steward.transport.target import SSHTarget

#: Exit codes of the probe script, so each failure gets its own message.
SUDO_FAILED, PYTHON_FAILED, UPLOAD_CORRUPT = 90, 91, 92
PROBE_MARK = "steward-probe"
PYTHON_MARK = "steward-python"


def _remote_cache_prelude(target: SSHTarget, bundle: Bundle) -> str:
    """Shell that names the interpreter and the bundle's place in the user's cache."""
    return (
        f"py={shlex.quote(target.python)}\n"
        'd="${XDG_CACHE_HOME:-$HOME/.cache}/steward"\n'
        f'f="$d/{bundle.remote_name}"\n'
        f"run={shlex.quote('sudo -n --' if target.sudo else '')}\n"
    )


def probe_script(target: SSHTarget, bundle: Bundle) -> str:
    """Checks sudo and python, then prints whether the bundle is cached and where."""
    sudo_check = (
        'o=$(sudo -n true 2>&1) || { printf "%s\\n" "$o" >&2; exit '
        f"{SUDO_FAILED}; }}\n" if target.sudo else ""
    )
    # Marked lines, so whatever else a login shell or a python wrapper prints is ignored.
    return (
        _remote_cache_prelude(target, bundle) + sudo_check
        + "v=$($run \"$py\" -c 'import sys; "
        f"print(\"{PYTHON_MARK} %d.%d\" % sys.version_info[:2])' 2>&1)"
        f' || {{ printf "%s\\n" "$v" >&2; exit {PYTHON_FAILED}; }}\n'
        'printf "%s\\n" "$v"\n'
        'if [ -f "$f" ]; then s=present; else s=missing; fi\n'
        f'printf "{PROBE_MARK} %s %s\\n" "$s" "$f"\n'
    )


def upload_script(target: SSHTarget, bundle: Bundle) -> str:
    """Stdin into a temp file, its sha256 checked by the remote python, then into place."""
    check = ("import hashlib, sys; data = open(sys.argv[1], 'rb').read(); "
             "sys.exit(hashlib.sha256(data).hexdigest() != sys.argv[2])")
    return (
        "set -e\numask 077\n" + _remote_cache_prelude(target, bundle)
        + 'mkdir -p "$d"\n'
        't=$(mktemp "$d/.upload.XXXXXX")\n'
        "trap 'rm -f \"$t\"' EXIT\n"
        'cat > "$t"\n'
        f'if ! $run "$py" -c {shlex.quote(check)} "$t" {bundle.sha256}; then\n'
        f'  echo "the uploaded bundle does not have sha256 {bundle.sha256}" >&2; '
        f"exit {UPLOAD_CORRUPT}\nfi\n"
        'mv -f "$t" "$f"\n'
    )


def sh(script: str) -> str:
    """Run under sh whatever the login shell is: the scripts are POSIX sh."""
    return f"sh -c {shlex.quote(script)}"
