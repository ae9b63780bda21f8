"""Several first starters of the embedded PostgreSQL at once, on a host where it never ran.

Two pytest-xdist workers, two cron jobs, or a job and ``make run`` on a new host all start the
server at the same moment. As root (CI runners, containers) each of them would create the
``pgserver`` system user and the data folder; the project serialises that whole first start
(config/embedded_pg). Here the host "where it never ran" is made for real: a mount namespace
with a private copy of /etc in which the ``pgserver`` user does not exist, and a ``useradd`` on
PATH that takes three seconds (as on a slow host), so every starter is inside the first start at
once. Without the project's lock the second ``useradd`` fails with exit 9 (user exists).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support.db import ROOT
from tests.support.fresh_copy import user_env

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="a first start as root creates a system user"),
    pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (util-linux)"),
]

STARTERS = 3

_SCRIPT = textwrap.dedent("""\
    set -u
    mount --bind "$FAKE_ETC" /etc
    id pgserver >/dev/null 2>&1 && { echo "pgserver exists in the private /etc"; exit 97; }
    for i in $(seq 1 "$STARTERS"); do
      "$PYTHON" -m config.embedded_pg start >"$OUT/starter.$i" 2>&1 &
      eval "pid$i=\\$!"
    done
    for i in $(seq 1 "$STARTERS"); do
      eval "wait \\$pid$i"; echo "$?" >"$OUT/rc.$i"
    done
    id -u pgserver >"$OUT/uid" 2>&1
    "$PYTHON" -m config.embedded_pg stop >"$OUT/stop" 2>&1
""")


def _private_etc(into: Path) -> Path:
    """A copy of /etc without the ``pgserver`` user or group."""
    etc = into / "etc"
    shutil.copytree("/etc", etc, symlinks=True, ignore_dangling_symlinks=True)
    for name in ("passwd", "shadow", "group", "gshadow", "subuid", "subgid"):
        table = etc / name
        if table.exists():
            kept = [line for line in table.read_text().splitlines(keepends=True)
                    if not line.startswith("pgserver:")]
            table.write_text("".join(kept))
    return etc


def _slow_useradd(into: Path) -> Path:
    bin_dir = into / "bin"
    bin_dir.mkdir()
    real = shutil.which("useradd") or "/usr/sbin/useradd"
    fake = bin_dir / "useradd"
    fake.write_text(f"#!/bin/sh\nsleep 3\nexec {real} \"$@\"\n")
    fake.chmod(0o755)
    return bin_dir


def test_several_first_starters_as_root_on_a_host_without_the_pgserver_user_all_succeed(tmp_path):
    real_before = _real_pgserver_entry()
    tmp_path.chmod(0o755)  # the server runs as the pgserver user and must get in
    pgdata = tmp_path / "var" / "pgdata"  # var/ absent, as in a fresh clone
    out = tmp_path / "out"
    out.mkdir()
    env = user_env(
        FAKE_ETC=str(_private_etc(tmp_path)),
        PATH=f"{_slow_useradd(tmp_path)}:{os.environ['PATH']}",
        DRAINS_VAR_DIR=str(tmp_path / "var"),
        PYTHON=sys.executable,
        OUT=str(out),
        STARTERS=str(STARTERS),
    )
    try:
        done = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", _SCRIPT],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
        )
    finally:
        subprocess.run(["pkill", "-KILL", "-f", str(pgdata)], check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    outputs = {i: (out / f"starter.{i}").read_text() for i in range(1, STARTERS + 1)}
    codes = {i: (out / f"rc.{i}").read_text().strip() for i in range(1, STARTERS + 1)}
    assert codes == {i: "0" for i in codes}, outputs
    for text in outputs.values():
        assert f"embedded PostgreSQL running in {pgdata}" in text, outputs
        assert "Traceback" not in text, outputs
    # One server was made, by the user the first starter created, and it stopped cleanly.
    assert (pgdata / "PG_VERSION").exists()
    assert (out / "uid").read_text().strip().isdigit(), (out / "uid").read_text()
    assert pgdata.stat().st_uid == int((out / "uid").read_text())
    assert "stopped" in (out / "stop").read_text(), (out / "stop").read_text()
    # The real host was not touched: the user was created in the private /etc only.
    assert _real_pgserver_entry() == real_before


def _real_pgserver_entry() -> list[str]:
    return [line for line in Path("/etc/passwd").read_text().splitlines()
            if line.startswith("pgserver:")]
