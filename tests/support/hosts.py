"""Several "hosts" on one machine for the many-host tests.

A host is a set of processes in a UTS namespace of its own (``unshare --uts``, as root), so that
``socket.gethostname()`` — which names a run's host and every session's application_name —
differs, with a ``var/`` of its own for logs and the same DATABASE_URL as the others. Where
namespaces cannot be made (not root), the harness says so and the test fails: it never skips.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.db import ROOT, child_env, with_settings

_CHECKED: list[bool] = []


def host_argv(host: str, argv: list[str]) -> list[str]:
    return ["unshare", "--uts", "--", "/bin/sh", "-c", 'hostname "$0" && exec "$@"', host, *argv]


def require_namespaces() -> None:
    if _CHECKED:
        return
    probe = subprocess.run(host_argv("probe-host", ["hostname"]), capture_output=True, text=True)
    if probe.returncode != 0 or probe.stdout.strip() != "probe-host":
        raise AssertionError(
            "The many-host tests run each host in its own UTS namespace (`unshare --uts`), which "
            f"needs root; here it failed: {probe.stderr.strip() or probe.stdout.strip()}. Run "
            "the tests as root (CI does)."
        )
    _CHECKED.append(True)


class Host:
    def __init__(self, name: str, root: Path, database_url: str,
                 settings: dict[str, object] | None = None, **env: str):
        require_namespaces()
        self.name = name
        self.var = root / name / "var"
        self.var.mkdir(parents=True, exist_ok=True)
        self.env = child_env(DRAINS_VAR_DIR=str(self.var), **env)
        if settings:
            self.env = with_settings(self.env, **settings)
        self.env["DATABASE_URL"] = database_url

    def popen(self, *args: str, **extra: str) -> subprocess.Popen:
        return subprocess.Popen(
            host_argv(self.name, [sys.executable, str(ROOT / "manage.py"), *args]),
            cwd=ROOT, env={**self.env, **extra}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True,
        )

    def run(self, *args: str, timeout: float = 180, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            host_argv(self.name, [sys.executable, str(ROOT / "manage.py"), *args]),
            cwd=ROOT, env={**self.env, **extra}, capture_output=True, text=True, timeout=timeout,
        )
