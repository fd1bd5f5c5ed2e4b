"""port_check: a TCP connect to host:port."""
import json
import socket
import sys
import time

params = json.load(sys.stdin)
host, port = params.get("host", "127.0.0.1"), int(params["port"])
started = time.monotonic()
try:
    with socket.create_connection((host, port), timeout=int(params.get("timeout", 3))):
        open_, error = True, None
except OSError as exc:
    open_, error = False, str(exc)
print(json.dumps({"host": host, "port": port, "open": open_, "error": error,
                  "seconds": round(time.monotonic() - started, 3)}, sort_keys=True))
