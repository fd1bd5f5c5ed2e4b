"""restart_service: systemctl restart NAME (or service NAME restart); noop only describes it."""
import json
import shutil
import subprocess
import sys

params = json.load(sys.stdin)
name = params["name"]
if shutil.which("systemctl"):
    command = ["systemctl", "restart", name]
elif shutil.which("service"):
    command = ["service", name, "restart"]
else:
    command = None
if params.get("_noop"):
    print(json.dumps({"name": name, "noop": True,
                      "would": " ".join(command) if command else
                      "nothing: no service manager (systemctl or service) on this node"},
                     sort_keys=True))
    sys.exit(0)
if command is None:
    print(json.dumps({"_error": {"kind": "restart_service/no-manager",
                                 "msg": "no service manager (systemctl or service) on this node"}}))
    sys.exit(1)
done = subprocess.run(command, capture_output=True, text=True)
print(json.dumps({"name": name, "noop": False, "command": " ".join(command),
                  "restarted": done.returncode == 0,
                  "output": (done.stdout + done.stderr).strip()[-2000:]}, sort_keys=True))
sys.exit(0 if done.returncode == 0 else 1)
