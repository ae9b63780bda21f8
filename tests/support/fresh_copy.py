"""A fresh copy of the checkout, as a new user gets it: committed files only, no var/, and an
environment without DATABASE_URL — so the embedded PostgreSQL default is what runs.

The copy reuses this checkout's virtualenv (a symlink; installing one is make's own step and
needs the network). On the way out the copy's embedded server is stopped, any process still
running from the copy is killed, and the folder is removed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

from tests.support.db import ROOT

# Variables that would point a child at this test run's database or settings instead of the
# copy's own defaults.
NOT_INHERITED = ("DATABASE_URL", "DJANGO_SETTINGS_MODULE", "DRAINS_VAR_DIR", "TEST_SETTINGS")


def user_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


@contextmanager
def fresh_copy(tag: str) -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix=f"drains-{tag}-"))
    base.chmod(0o755)  # as root, the embedded server runs as its own user and must get in
    copy = base / "checkout"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(copy)], check=True, timeout=120)
    (copy / ".venv").symlink_to(ROOT / ".venv")
    assert not (copy / "var").exists()
    try:
        yield copy
    finally:
        _kill_processes_under(copy, spare_postgres=True)  # the server is stopped properly below
        subprocess.run(
            [sys.executable, "-m", "config.embedded_pg", "stop"],
            cwd=copy, env=user_env(), capture_output=True, timeout=120,
        )
        _kill_processes_under(copy)
        shutil.rmtree(base, ignore_errors=True)


def _kill_processes_under(copy: Path, *, spare_postgres: bool = False) -> None:
    """Anything still running from the copy (a web server, a detached drain) goes with it."""
    marker = str(copy)
    for process in psutil.process_iter(["pid", "name", "cmdline", "cwd"]):
        try:
            if process.pid == os.getpid() or (spare_postgres and process.info["name"] == "postgres"):
                continue
            cmdline = " ".join(process.info["cmdline"] or [])
            if marker in cmdline or (process.info["cwd"] or "").startswith(marker):
                process.kill()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue


def embedded_url(copy: Path, database: str = "drains") -> str:
    """The copy's embedded server as a URL, for a test that reads what the copy wrote."""
    done = subprocess.run(
        [sys.executable, "-m", "config.embedded_pg", "url", database],
        cwd=copy, env=user_env(), capture_output=True, text=True, check=True, timeout=120,
    )
    return done.stdout.strip()
