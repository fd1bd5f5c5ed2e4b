"""Local users: read through the C library (``pwd``, ``grp``), changed with the shadow tools.

* ``groups`` are exactly the supplementary groups: the groups whose member list names the
  user. Order does not matter; the primary group is not implied.
* ``gid`` given as a name is compared by the group it resolves to, so a user whose primary
  gid has two names is not reported out of sync.
* The password hash is read with ``getent shadow`` and set with ``chpasswd -e`` on standard
  input, so it is never on a command line (visible in ``ps``, quoted in error messages) and
  never in a report: old and new values are always shown as a placeholder.
* ``system`` only matters at creation, ``managehome`` at creation, removal and a change of
  ``home`` (the directory is moved).
* On creation, when no ``gid`` is given and a group named like the user exists (declared in
  the same catalog, typically), the user joins it as its primary group instead of useradd
  refusing to create the usual per-user group.
"""

from __future__ import annotations

import grp
import hashlib
import pwd
from typing import Any

from steward.catalog.sensitive import REDACTED
from steward.engine.provider import Change, Provider, ProviderError
from steward.engine.providers.group import lookup_group, run_tool

#: Properties compared on an existing user, in report order, with their usermod flag.
USERMOD_FLAGS = {"uid": "-u", "gid": "-g", "groups": "-G", "home": "-d", "shell": "-s",
                 "comment": "-c"}


def lookup_user(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def supplementary_groups(name: str) -> list[str]:
    return sorted(g.gr_name for g in grp.getgrall() if name in g.gr_mem)


class UserProvider(Provider):
    type_name = "user"

    def desired(self) -> dict[str, Any]:
        """Drift history keeps a digest of the password hash, never the hash itself."""
        values = super().desired()
        if "password" in values:
            digest = hashlib.sha256(str(values["password"]).encode()).hexdigest()
            values["password"] = f"sha256:{digest}"
        if "groups" in values:
            values["groups"] = sorted(set(values["groups"]))
        return values

    def _show(self, prop: str, value: Any) -> Any:
        return REDACTED if prop == "password" or prop in self.sensitive else value

    def _gid_matches(self, current_gid: int, wanted: Any) -> tuple[bool, Any]:
        """Whether the primary group is ``wanted``; also the current value in its form."""
        if isinstance(wanted, int) or str(wanted).isdigit():
            return current_gid == int(wanted), current_gid
        current = self._group_name(current_gid)
        group = lookup_group(str(wanted))
        if group is not None:
            return group.gr_gid == current_gid, current
        return current == wanted, current

    @staticmethod
    def _group_name(gid: int) -> str | int:
        try:
            return grp.getgrgid(gid).gr_name
        except KeyError:
            return gid

    def _password(self) -> str | None:
        result = self.ctx.runner.run(["getent", "shadow", self.name])
        if result.returncode == 2:
            return None
        if not result.ok:
            raise ProviderError(f"reading the password of {self.name}: {result.describe()}")
        fields = result.stdout.strip().split(":")
        return fields[1] if len(fields) > 1 else None

    def check(self) -> list[Change]:
        name = self.name
        current = lookup_user(name)
        if self.params.get("ensure") == "absent":
            if current is None:
                return []
            return [Change("ensure", "present", "absent", f"removed user {name}")]
        if current is None:
            return [Change("ensure", "absent", "present", f"created user {name}")]
        changes: list[Change] = []
        for prop in (*USERMOD_FLAGS, "password"):
            wanted = self.params.get(prop)
            if wanted is None:
                continue
            have: Any
            if prop == "uid":
                have, ok = current.pw_uid, current.pw_uid == wanted
            elif prop == "gid":
                ok, have = self._gid_matches(current.pw_gid, wanted)
            elif prop == "groups":
                have = supplementary_groups(name)
                wanted = sorted(set(wanted))
                ok = have == wanted
            elif prop == "home":
                have, ok = current.pw_dir, current.pw_dir == wanted
            elif prop == "shell":
                have, ok = current.pw_shell, current.pw_shell == wanted
            elif prop == "comment":
                have, ok = current.pw_gecos, current.pw_gecos == wanted
            else:
                have = self._password()
                ok = have == wanted
            if ok:
                continue
            old, new = self._show(prop, have), self._show(prop, wanted)
            if prop == "password" or prop in self.sensitive:
                message = f"changed {prop} of user {name}"
            else:
                message = f"changed {prop} of user {name} from {old!r} to {new!r}"
            changes.append(Change(prop, old, new, message))
        return changes

    def sync(self, changes: list[Change]) -> None:
        name = self.name
        props = {c.property: c for c in changes}
        ensure = props.get("ensure")
        if ensure is not None and ensure.new == "absent":
            argv = ["userdel", "-r", name] if self.params.get("managehome") else ["userdel", name]
            run_tool(self, argv, f"removing user {name}")
            return
        if ensure is not None:
            self._create()
            if self.params.get("password") is not None:
                self._set_password()
            return
        argv = ["usermod"]
        for prop, flag in USERMOD_FLAGS.items():
            if prop in props:
                value = self.params[prop]
                argv += [flag, ",".join(sorted(set(value))) if prop == "groups" else str(value)]
                if prop == "home" and self.params.get("managehome"):
                    argv.append("-m")
        if len(argv) > 1:
            run_tool(self, [*argv, name], f"changing user {name}")
        if "password" in props:
            self._set_password()

    def _create(self) -> None:
        name, params = self.name, self.params
        argv = ["useradd"]
        if params.get("uid") is not None:
            argv += ["-u", str(params["uid"])]
        if params.get("gid") is not None:
            argv += ["-g", str(params["gid"])]
        elif lookup_group(name) is not None:
            argv += ["-g", name]
        if params.get("groups"):
            argv += ["-G", ",".join(sorted(set(params["groups"])))]
        for prop, flag in (("home", "-d"), ("shell", "-s"), ("comment", "-c")):
            if params.get(prop) is not None:
                argv += [flag, str(params[prop])]
        if params.get("system"):
            argv.append("-r")
        argv.append("-m" if params.get("managehome") else "-M")
        run_tool(self, [*argv, name], f"creating user {name}")

    def _set_password(self) -> None:
        hashed = str(self.params["password"])
        if "\n" in hashed or ":" in hashed:
            raise ProviderError(f"the password of user {self.name} is not a valid hash "
                                "(contains ':' or a newline)")
        run_tool(self, ["chpasswd", "-e"], f"setting the password of user {self.name}",
                 input=f"{self.name}:{hashed}\n")
