"""Capture the real ``systemctl`` transcripts the service provider tests replay.

systemd must be PID 1 to answer ``systemctl``; CI has no such machine, but a root can boot
systemd 252 as PID 1 of its own PID, mount and cgroup namespaces. This script unpacks the
cached Debian root, installs systemd into it from the configured mirror (network needed,
which is why this is a maintainer tool and not a test), boots it, drives a few test units
through the states the provider must understand, and writes every command with its exact
argv, exit code, stdout and stderr to ``fixtures/systemctl/*.json``.

    python -m tests.engine.providers.capture_systemctl

Killing the namespace's PID 1 at the end takes every process and mount with it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from steward.engine.providers.service import show_command
from tests.engine.providers.debian_root import ROOT_PATH, remove_tree, unpack_root

FIXTURES = Path(__file__).parent / "fixtures" / "systemctl"

BOOT = """
set -e
R="$1"
mount -t proc proc "$R/proc"
mount -t sysfs sysfs "$R/sys"
mount -t cgroup2 cgroup2 "$R/sys/fs/cgroup"
mount -t tmpfs tmpfs "$R/run"
mount -t tmpfs tmpfs "$R/tmp"
mount --bind /dev "$R/dev"
exec chroot "$R" /usr/bin/env -i container=steward-capture PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    /lib/systemd/systemd --system --log-target=null
"""

UNITS = {
    "steward-demo.service": (
        "[Unit]\nDescription=Steward demo service\n\n[Service]\nExecStart=/bin/sleep infinity\n"
        "\n[Install]\nWantedBy=multi-user.target\n"
    ),
    "steward-static.service": (
        "[Unit]\nDescription=Steward static service (no [Install])\n\n[Service]\n"
        "ExecStart=/bin/sleep infinity\n"
    ),
    "steward-crash.service": (
        "[Unit]\nDescription=Steward crash-looping service\n\n[Service]\nExecStart=/bin/false\n"
        "Restart=always\nRestartSec=60\n\n[Install]\nWantedBy=multi-user.target\n"
    ),
}
#: Units whose state the tests read; sshd.service is an alias of ssh.service.
MANY = ["cron.service", "steward-demo.service", "steward-static.service", "nosuch.service",
        "console-getty.service", "sshd.service", "e2scrub_reap.service"]


class Booted:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.proc = subprocess.Popen(
            ["unshare", "--fork", "--pid", "--mount", "--cgroup", "--propagation", "private",
             "/bin/sh", "-c", BOOT, "boot", str(root)]
        )
        self.pid = self._init_pid()

    def _init_pid(self) -> int:
        for _ in range(100):
            out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True,
                                 text=True, check=False).stdout.split()
            if out:
                return int(out[0])
            time.sleep(0.1)
        raise RuntimeError("systemd did not start")

    def run(self, argv: list[str]) -> dict[str, Any]:
        full = ["nsenter", "-t", str(self.pid), "-m", "-p", "-C", "-r", "-w", "/usr/bin/env",
                "-i", f"PATH={ROOT_PATH}", "LC_ALL=C", *argv]
        proc = subprocess.run(full, capture_output=True, text=True, check=False)
        return {"argv": argv, "returncode": proc.returncode, "stdout": proc.stdout,
                "stderr": proc.stderr}

    def wait_booted(self) -> str:
        for _ in range(150):
            state = str(self.run(["systemctl", "is-system-running"])["stdout"]).strip()
            if state in ("running", "degraded"):
                return state
            time.sleep(0.2)
        raise RuntimeError(f"systemd did not finish booting (state {state!r})")

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


def scenario(booted: Booted, name: str, description: str, steps: list[list[str]]) -> None:
    commands = [booted.run(step) for step in steps]
    version = booted.run(["systemctl", "--version"])["stdout"].splitlines()[0]
    document = {"description": description, "systemd": version, "commands": commands}
    (FIXTURES / f"{name}.json").write_text(json.dumps(document, indent=2) + "\n")
    sys.stderr.write(f"captured {name}: {len(commands)} commands\n")


def capture(booted: Booted) -> None:
    demo = "steward-demo.service"
    scenario(booted, "show_many", "One show call for units in every state the provider reads: "
             "running+enabled, stopped+disabled, static, not-found, masked, alias, failed.",
             [show_command(MANY)])
    scenario(booted, "start_enable", "A stopped, disabled service made running and enabled.",
             [show_command([demo]), ["systemctl", "start", "--", demo],
              ["systemctl", "enable", "--", demo], show_command([demo])])
    scenario(booted, "restart", "Refresh of a running service.",
             [show_command([demo]), ["systemctl", "restart", "--", demo]])
    booted.run(["systemctl", "enable", "--runtime", "--", "steward-crash.service"])
    booted.run(["systemctl", "start", "--", "steward-crash.service"])
    time.sleep(1.5)
    scenario(booted, "crash_loop", "A crash-looping unit (activating/auto-restart) enabled "
             "only until reboot (enabled-runtime).", [show_command(["steward-crash.service"])])
    unit = booted.root / "etc/systemd/system" / demo
    unit.write_text(UNITS[demo].replace("infinity", "86400"))
    scenario(booted, "daemon_reload", "Refresh after the unit file changed on disk: "
             "NeedDaemonReload=yes, so daemon-reload before restart.",
             [show_command([demo]), ["systemctl", "daemon-reload"],
              ["systemctl", "restart", "--", demo]])
    scenario(booted, "stop_disable", "A running, enabled service stopped and disabled.",
             [show_command([demo]), ["systemctl", "stop", "--", demo],
              ["systemctl", "disable", "--", demo], show_command([demo])])
    scenario(booted, "masked_start", "Starting a masked unit fails.",
             [show_command(["console-getty.service"]),
              ["systemctl", "start", "--", "console-getty.service"]])


def main() -> int:
    FIXTURES.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="steward-systemd-"))
    try:
        session = unpack_root(work / "root")
        session.sh("rm -f /usr/sbin/policy-rc.d; apt-get update -q >/dev/null; "
                   "apt-get install -y -q --no-install-recommends systemd dbus cron "
                   "openssh-server e2fsprogs >/dev/null")
        for name, text in UNITS.items():
            session.write(f"/etc/systemd/system/{name}", text)
        # What systemctl says where systemd is installed but not PID 1 (as on the CI host).
        no_systemd = session.run(show_command(["cron.service"]), check=False,
                                 env={"LC_ALL": "C"})
        (FIXTURES / "no_systemd.json").write_text(json.dumps({
            "description": "systemctl where systemd is installed but not running as PID 1.",
            "systemd": session.run(["systemctl", "--version"]).stdout.splitlines()[0],
            "commands": [{"argv": list(no_systemd.argv), "returncode": no_systemd.returncode,
                          "stdout": no_systemd.stdout, "stderr": no_systemd.stderr}],
        }, indent=2) + "\n")
        session.sh("systemctl mask systemd-udevd.service systemd-udevd-control.socket "
                   "systemd-udevd-kernel.socket getty@tty1.service console-getty.service "
                   "systemd-logind.service; systemctl set-default multi-user.target")
        booted = Booted(session.root)
        try:
            sys.stderr.write(f"systemd booted: {booted.wait_booted()}\n")
            capture(booted)
        finally:
            booted.stop()
    finally:
        remove_tree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
