"""file_info: lstat of a path, its sha256 when a world-readable file, its entries when a
directory."""
import hashlib
import json
import os
import stat
import sys

params = json.load(sys.stdin)
path = params["path"]
root = os.environ.get("STEWARD_ROOT")
target = os.path.join(root, path.lstrip("/")) if root else path
try:
    st = os.lstat(target)
except FileNotFoundError:
    print(json.dumps({"path": path, "exists": False}, sort_keys=True))
    sys.exit(0)
except OSError as exc:
    print(json.dumps({"_error": {"kind": "file_info/unreadable", "msg": f"{path}: {exc}"}}))
    sys.exit(1)
kinds = ((stat.S_ISREG, "file"), (stat.S_ISDIR, "directory"), (stat.S_ISLNK, "link"),
         (stat.S_ISFIFO, "fifo"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character"),
         (stat.S_ISBLK, "block"))
kind = next((name for test, name in kinds if test(st.st_mode)), "unknown")
result = {"path": path, "exists": True, "type": kind, "mode": f"{stat.S_IMODE(st.st_mode):04o}",
          "uid": st.st_uid, "gid": st.st_gid, "size": st.st_size}
try:
    import grp
    import pwd
    result["owner"] = pwd.getpwuid(st.st_uid).pw_name
    result["group"] = grp.getgrgid(st.st_gid).gr_name
except (ImportError, KeyError):
    pass
if kind == "file" and not st.st_mode & stat.S_IROTH:
    # A file only its owner or group may read may hold a secret: not even its hash leaves.
    result["sha256"] = None
elif kind == "file":
    digest = hashlib.sha256()
    with open(target, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    result["sha256"] = digest.hexdigest()
elif kind == "directory":
    entries = sorted(os.listdir(target))
    result["entries"] = entries[:200]
    result["entries_total"] = len(entries)
elif kind == "link":
    result["target"] = os.readlink(target)
print(json.dumps(result, sort_keys=True))
