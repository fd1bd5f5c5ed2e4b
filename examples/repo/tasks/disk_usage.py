"""disk_usage: shutil.disk_usage of a path (under $STEWARD_ROOT on sandboxed nodes)."""
import json
import os
import shutil
import sys

params = json.load(sys.stdin)
path = params.get("path", "/")
root = os.environ.get("STEWARD_ROOT")
target = os.path.join(root, path.lstrip("/")) if root else path
try:
    usage = shutil.disk_usage(target)
except OSError as exc:
    print(json.dumps({"_error": {"kind": "disk_usage/unreadable", "msg": f"{path}: {exc}"}}))
    sys.exit(1)
print(json.dumps({"path": path, "total": usage.total, "used": usage.used, "free": usage.free,
                  "percent_used": round(100 * usage.used / usage.total, 1) if usage.total else 0},
                 sort_keys=True))
