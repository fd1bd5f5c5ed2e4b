"""Small facts about the running system and process: uptime, time zone, identity, runtimes."""

from __future__ import annotations

import grp
import os
import pwd
import sys
import time
from typing import Any

import steward
from steward.facts._files import read_text


def uptime_facts(seconds: int) -> dict[str, Any]:
    """Totals as Facter's ``system_uptime``: ``hours`` counts all hours, not the remainder."""
    days, hours, minutes = seconds // 86400, seconds // 3600, (seconds // 60) % 60
    if days > 1:
        text = f"{days} days"
    elif days == 1:
        text = "1 day"
    elif hours:
        text = f"{hours}:{minutes:02d} hours"
    else:
        text = f"{minutes} minutes"
    return {"seconds": seconds, "hours": hours, "days": days, "uptime": text}


def collect_uptime(root: str) -> dict[str, Any]:
    seconds = int(float(read_text(root, "/proc/uptime").split()[0]))
    return {"uptime": uptime_facts(seconds)}


def collect_timezone(root: str) -> dict[str, Any]:
    """The abbreviation in effect (``UTC``, ``CET``), as Facter's ``timezone``."""
    return {"timezone": time.strftime("%Z")}


def collect_identity(root: str) -> dict[str, Any]:
    uid, gid = os.geteuid(), os.getegid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:  # a uid without a passwd entry (containers run as arbitrary uids)
        user = str(uid)
    try:
        group = grp.getgrgid(gid).gr_name
    except KeyError:
        group = str(gid)
    return {
        "identity": {
            "user": user,
            "uid": uid,
            "group": group,
            "gid": gid,
            "privileged": uid == 0,
        }
    }


def collect_runtime(root: str) -> dict[str, Any]:
    """The interpreter running the engine, and Steward's own version."""
    version = ".".join(str(part) for part in sys.version_info[:3])
    return {
        "python": {
            "version": version,
            "executable": sys.executable,
            "implementation": sys.implementation.name,
        },
        "steward": {"version": steward.__version__},
    }
