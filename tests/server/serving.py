"""Serve an application for real (uvicorn, TLS, loopback) in a thread of the test process."""

from __future__ import annotations

import contextlib
import ssl
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import uvicorn

from steward.server.config import ServerConfig
from tests.e2e.openapi_check import checking_hook


@contextlib.contextmanager
def serving(app: Any, config: ServerConfig) -> Iterator[httpx.Client]:
    """Run ``app`` on ``config``'s port until the block ends; yields a client that trusts it
    and checks every answer against the app's OpenAPI document (tests/e2e/openapi_check.py)."""
    server = uvicorn.Server(uvicorn.Config(
        app, host="127.0.0.1", port=config.port, log_level="warning",
        ssl_certfile=str(config.tls_cert), ssl_keyfile=str(config.tls_key),
        ws="none", lifespan="on", timeout_graceful_shutdown=1,
    ))
    thread = threading.Thread(target=server.run, name="steward-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "the server stopped while starting"
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        tls = ssl.create_default_context(cafile=config.ca_cert)
        with httpx.Client(base_url=config.server_url, verify=tls, timeout=30,
                          event_hooks={"response": [checking_hook(app.openapi)]}) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(15)
