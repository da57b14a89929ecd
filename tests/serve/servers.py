"""Servers for the tests: a free loopback port, and an app under uvicorn in a thread.

A plain module (not a conftest) so that tests outside ``tests/serve`` import the same helper:
``from tests.serve.servers import served_in_thread``.
"""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def served_in_thread(app, **config):
    """``app`` under uvicorn in a thread of this process (so it can be given test doubles) on a
    free loopback port; yields the base URL and stops the server on exit. ``config`` adds or
    overrides ``uvicorn.Config`` options (the access log is off by default)."""
    import uvicorn

    port = free_port()
    options = {"log_config": None, "access_log": False, **config}
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, **options))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
