"""service_status: systemctl's view of a unit, falling back to `service NAME status`."""
import json
import shutil
import subprocess
import sys

name = json.load(sys.stdin)["name"]
if shutil.which("systemctl"):
    active = subprocess.run(["systemctl", "is-active", name], capture_output=True, text=True)
    enabled = subprocess.run(["systemctl", "is-enabled", name], capture_output=True, text=True)
    print(json.dumps({"name": name, "manager": "systemd",
                      "active": active.stdout.strip() or "unknown",
                      "enabled": enabled.stdout.strip() or "unknown",
                      "running": active.returncode == 0}, sort_keys=True))
elif shutil.which("service"):
    done = subprocess.run(["service", name, "status"], capture_output=True, text=True)
    print(json.dumps({"name": name, "manager": "service", "running": done.returncode == 0,
                      "status": (done.stdout + done.stderr).strip()[-2000:]}, sort_keys=True))
else:
    print(json.dumps({"name": name, "manager": None, "running": None,
                      "status": "no service manager (systemctl or service) on this node"},
                     sort_keys=True))
