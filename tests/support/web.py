"""The production web server (gunicorn with config/gunicorn.conf.py) in a child process, on a
free port of 127.0.0.1, for tests that go over real HTTP — the road users take."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from tests.support.db import ROOT
from tests.support.processes import stop


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def gunicorn(env: dict[str, str], *, ready_path: str = "/api/health/", timeout: float = 60) -> Iterator[str]:
    """Serve the project until the block ends; yields the base URL once ``ready_path`` answers
    (any HTTP status counts: a 503 from the health check is an answer)."""
    port = free_port()
    env = {**env, "DRAINS_WEB_BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": env.get("WEB_CONCURRENCY", "1")}
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "config" / "gunicorn.conf.py"), "config.wsgi"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(base + ready_path, timeout=5).close()
                break
            except urllib.error.HTTPError:
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"gunicorn did not start:\n{process.communicate()[0]}") from None
                time.sleep(0.1)
        yield base
    finally:
        stop(process)
