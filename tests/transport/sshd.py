"""Agentless test nodes: a real OpenSSH sshd whose sessions land in a private Debian root.

Each node is an unpacked copy of the cached bookworm root (``tests/engine/providers``) and one
``/usr/sbin/sshd -D -e -f CONFIG`` on 127.0.0.1 with its own port, generated host key and
``AuthorizedKeysFile``. sshd runs under ``unshare --fork --pid --mount --kill-child`` and, in
that private mount namespace only:

* a tmpfs covers ``/run`` (so sshd's privilege-separation dir ``/run/sshd`` exists without
  creating it on the host, and the authorized_keys file is readable by every user there) and
  the root is bind-mounted at ``/run/steward-node``, a path whose
  every component is root-owned and not writable by others, as ``ChrootDirectory`` demands
  (the root itself may then live under the world-writable /tmp);
* ``/proc`` of sshd's PID namespace is mounted in the root, so the engine and the tests see
  exactly the node's processes;
* the root's ``/etc/passwd``, ``group`` and ``shadow`` are bind-mounted over the host's, so
  sshd authenticates against the *node's* accounts (root, and the users a test adds) and the
  host's account database is never touched.

``ChrootDirectory`` then puts every session, as root or as an unprivileged user, inside the
root. Killing the ``unshare`` process (SIGKILL: it ignores SIGTERM) takes sshd, every session
and the namespaces with it; nothing stays mounted on the host.

Accounts must exist before sshd starts: the bind mounts pin the files sshd sees, and the
shadow tools replace ``/etc/passwd`` by renaming, which the running sshd does not notice.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from steward.transport.target import SSHTarget
from tests.engine.providers.debian_root import ChrootSession, cache_dir, unavailable_reason

SSHD = Path("/usr/sbin/sshd")
MOUNT_POINT = "/run/steward-node"
#: sshd reads authorized_keys as the logging-in user, who cannot enter pytest's 0700 tmp dirs.
AUTHORIZED_KEYS = "/run/steward-authorized_keys"
START_SCRIPT = """\
set -e
root="$1"; config="$2"; keys="$3"
mount -t tmpfs -o mode=0755,size=1m steward-run /run
mkdir -m 0755 /run/sshd {mount_point}
install -m 0644 "$keys" {authorized_keys}
mount --rbind "$root" {mount_point}
mount -t proc proc {mount_point}/proc
for f in passwd group shadow; do mount --bind "$root/etc/$f" "/etc/$f"; done
exec {sshd} -D -e -f "$config"
"""


def sshd_unavailable_reason() -> str | None:
    """Why the SSH push tests cannot run here, or None when they can."""
    reason = unavailable_reason()
    if reason:
        return reason
    if not SSHD.is_file():
        return "the SSH push tests need a real sshd (apt-get install openssh-server)"
    for tool in ("ssh-keygen", "mount"):
        if shutil.which(tool) is None:
            return f"the SSH push tests need '{tool}' on the host"
    return None


def generate_key(path: Path, comment: str) -> Path:
    """A fresh ed25519 key pair (``path`` and ``path.pub``) made by the real ssh-keygen."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True, capture_output=True,
    )
    return path


def fingerprint(public_key: Path) -> str:
    """``SHA256:...`` as ``ssh-keygen -l`` prints it."""
    out = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(public_key)],
                         check=True, capture_output=True, text=True).stdout
    return out.split()[1]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def sudo_deb() -> Path | None:
    """sudo's .deb for the roots (minbase has no sudo), fetched once into the test cache.

    ``apt-get download`` uses the host's apt sources, like the root's debootstrap did; None
    when that is not possible here (no network, no apt lists).
    """
    debs = cache_dir() / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    with (debs / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = sorted(debs.glob("sudo_*.deb"))
        if found:
            return found[-1]
        work = Path(tempfile.mkdtemp(prefix="download-", dir=debs))
        try:
            proc = subprocess.run(["apt-get", "download", "-q", "sudo"], cwd=work,
                                  capture_output=True, text=True, check=False)
            fetched = sorted(work.glob("sudo_*.deb"))
            if proc.returncode != 0 or not fetched:
                return None
            final = debs / fetched[-1].name
            fetched[-1].replace(final)
            return final
        finally:
            shutil.rmtree(work, ignore_errors=True)


class SSHNode:
    """One root, its sshd, and the keys to reach it."""

    def __init__(self, name: str, session: ChrootSession, work: Path, client_key: Path) -> None:
        self.name = name
        self.session = session
        self.work = work
        self.client_key = client_key
        self.host_key = generate_key(work / "ssh_host_ed25519_key", f"{name}-host")
        self.known_hosts = work / "known_hosts"
        self.config = work / "sshd_config"
        self.log = work / "sshd.log"
        self.port = 0
        self.has_sudo = False
        self.process: subprocess.Popen[bytes] | None = None

    # --- preparing the root (before start) ---

    def prepare(self, users: Sequence[str] = (), sudoers: dict[str, str] | None = None,
                sudo: Path | None = None) -> None:
        """What a real node has: sshd's privsep account, its hostname resolvable, the users."""
        script = [
            "id sshd >/dev/null 2>&1 || useradd --system --no-create-home "
            "--home-dir /run/sshd --shell /usr/sbin/nologin sshd",
            f"echo '127.0.1.1 {socket.gethostname()}' >> /etc/hosts",
        ]
        # '*' rather than useradd's locked '!': without PAM, sshd refuses locked accounts.
        script += [f"id {u} >/dev/null 2>&1 || useradd -m -s /bin/bash -p '*' {u}"
                   for u in users]
        if sudo is not None:
            self.session.path("/tmp/sudo.deb").write_bytes(sudo.read_bytes())
            script += ["dpkg -i /tmp/sudo.deb >/dev/null", "rm -f /tmp/sudo.deb"]
        self.session.sh("\n".join(script))
        for user, rule in (sudoers or {}).items():
            self.session.write(f"/etc/sudoers.d/{user}", rule + "\n", 0o440)
        if sudoers:
            self.session.run(["visudo", "-c", "-q"])

    # --- sshd ---

    def start(self) -> None:
        self.stop()
        (self.work / "authorized_keys").write_text(
            Path(f"{self.client_key}.pub").read_text(encoding="utf-8")
        )
        start = self.work / "start-sshd.sh"
        start.write_text(START_SCRIPT.format(mount_point=MOUNT_POINT, sshd=SSHD,
                                             authorized_keys=AUTHORIZED_KEYS))
        for _attempt in range(5):
            self.port = free_port()
            self.config.write_text(self._config())
            self.log.write_bytes(b"")
            with self.log.open("ab") as log:
                self.process = subprocess.Popen(
                    ["unshare", "--fork", "--pid", "--mount", "--propagation", "private",
                     "--kill-child", "/bin/sh", str(start), str(self.session.root),
                     str(self.config), str(self.work / "authorized_keys")],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                )
            if self._wait_listening():
                break
        else:
            raise RuntimeError(f"sshd of {self.name} did not start:\n{self.log_text()}")
        public = self.host_key.with_suffix(".pub").read_text(encoding="utf-8").split()
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {public[0]} {public[1]}\n")

    def _config(self) -> str:
        return "\n".join([
            f"ListenAddress 127.0.0.1:{self.port}",
            f"HostKey {self.host_key}",
            f"AuthorizedKeysFile {AUTHORIZED_KEYS}",
            f"PidFile {self.work / 'sshd.pid'}",
            f"ChrootDirectory {MOUNT_POINT}",
            "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "PermitTTY no",
            "X11Forwarding no",
            "AllowTcpForwarding no",
            "AllowAgentForwarding no",
            "PrintMotd no",
            "UseDNS no",
            "MaxStartups 50",
            "LogLevel INFO",
            "",
        ])

    def _wait_listening(self, timeout: float = 15) -> bool:
        deadline = time.monotonic() + timeout
        assert self.process is not None
        while time.monotonic() < deadline:
            text = self.log_text()
            if "Server listening on" in text:
                return True
            if self.process.poll() is not None:
                if "Address already in use" in text:
                    return False
                raise RuntimeError(f"sshd of {self.name} exited:\n{text}")
            time.sleep(0.05)
        self.stop()
        return False

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        """SIGKILL the unshare we started: its PID namespace, sshd and sessions die with it."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
        child_pids = [int(p) for p in children.read_text().split()] if children.exists() else []
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(pid) for pid in child_pids):
            time.sleep(0.05)

    # --- reaching it ---

    def target(self, **overrides: Any) -> SSHTarget:
        settings: dict[str, Any] = {
            "host": "127.0.0.1", "port": self.port, "user": "root",
            "key_file": self.client_key, "known_hosts": self.known_hosts,
            "steward_known_hosts": self.work / "steward_known_hosts",
            "connect_timeout": 15.0, "command_timeout": 300.0,
        }
        settings.update(overrides)
        return SSHTarget(**settings)


def _alive(pid: int) -> bool:
    """A process that exists and is not a zombie (PID 1 here may not reap orphans)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
