"""journal: journalctl -n LINES [-u UNIT], else the tail of syslog/messages/<unit>.log."""
import json
import os
import shutil
import subprocess
import sys

params = json.load(sys.stdin)
unit = params.get("unit")
lines = int(params.get("lines", 50))
root = os.environ.get("STEWARD_ROOT", "")
if shutil.which("journalctl") and not root:
    command = ["journalctl", "--no-pager", "-o", "short-iso", "-n", str(lines)]
    if unit:
        command += ["-u", unit]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode == 0 and done.stdout.strip():
        print(json.dumps({"source": "journald", "unit": unit,
                          "lines": done.stdout.splitlines()[-lines:]}, sort_keys=True))
        sys.exit(0)
logdir = os.path.join(root, "var/log") if root else "/var/log"
names = [f"{unit}.log", os.path.join(unit, "error.log")] if unit else ["syslog", "messages"]
for name in names:
    path = os.path.join(logdir, name)
    if os.path.isfile(path):
        with open(path, encoding="utf-8", errors="replace") as handle:
            tail = handle.read().splitlines()[-lines:]
        print(json.dumps({"source": path[len(root):] if root else path, "unit": unit,
                          "lines": tail}, sort_keys=True))
        sys.exit(0)
print(json.dumps({"_error": {"kind": "journal/none", "msg": "no journald and none of "
                             + ", ".join(os.path.join("/var/log", n) for n in names)
                             + " exists"}}))
sys.exit(1)
