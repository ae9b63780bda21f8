"""`make run` refuses a port already taken before it starts anything, and exits non-zero when
a child dies during start-up (scripts/run_demo.py)."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from tests.support.db import ROOT, child_env
from tests.support.web import free_port


def test_make_run__a_taken_port_is_one_line_and_a_failure_before_anything_starts(tmp_path):
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        result = subprocess.run(
            ["make", "--no-print-directory", "run", f"PORT={port}"], cwd=ROOT,
            capture_output=True, text=True, timeout=120,
        )
    assert result.returncode != 0
    # Besides make's own "Error 2" line (and pip's notes, should make refresh the virtualenv):
    ours = [line for line in result.stderr.splitlines() if line.startswith("PORT=")]
    assert ours == [
        f"PORT={port}: something already listens on 127.0.0.1:{port}; stop it or run "
        "`make run PORT=<another port>`."
    ], result.stderr
    assert "Traceback" not in result.stderr
    assert "migrate" not in result.stdout and "Ready" not in result.stdout  # nothing started


def test_run_demo__a_bad_worker_count_is_refused_before_gunicorn_reads_it():
    result = subprocess.run([sys.executable, "scripts/run_demo.py", "--check-port"], cwd=ROOT,
                            env={"PORT": str(free_port()), "WEB_CONCURRENCY": "many",
                                 "PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "WEB_CONCURRENCY='many' is not a worker count; give a whole number from 1 to 64."
    )


@pytest.mark.parametrize("port", ["http", "0", "65536", ""])
def test_run_demo__a_port_that_is_no_port_is_refused(port):
    result = subprocess.run([sys.executable, "scripts/run_demo.py", "--check-port"], cwd=ROOT,
                            env={"PORT": port, "PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True, timeout=60)
    if port == "":
        assert result.returncode == 2 and "is not a TCP port number" in result.stderr
    else:
        assert result.returncode == 2
        assert result.stderr.strip() == f"PORT={port!r} is not a TCP port number (1-65535)."


@pytest.mark.django_db(transaction=True)  # the script's import commits to the test database
def test_run_demo__a_child_dying_during_start_up_exits_non_zero(tmp_path):
    # gunicorn refuses its own option (GUNICORN_CMD_ARGS): the web child exits 2 at once
    env = child_env(PORT=str(free_port()), GUNICORN_CMD_ARGS="--threads=not-a-number",
                    DRAINS_VAR_DIR=str(tmp_path / "var"), DEMO_USERNAME="demo-dies")
    result = subprocess.run([sys.executable, "scripts/run_demo.py"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "The web server did not start (exit 2)" in result.stdout, result.stdout
    assert "--threads: invalid int value: 'not-a-number'" in result.stderr, result.stderr
    assert "Ready" not in result.stdout
    assert result.stdout.rstrip().endswith("Stopped.")
