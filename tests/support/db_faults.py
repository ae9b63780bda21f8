"""The database faults of issue 21, for tests/drains/test_db_faults.py and bench/db_faults.py.

A private server (tests/support/private_pg.py) with a migrated template database holding
``decisions`` pending decisions; each case copies it. The drain is the real ``drain_halacha``
command, the backend claude-cli running the fake CLI (tests/support/fake_claude), whose call log
has one line per call that completed, i.e. was paid for. Each ``fault_*`` function starts a
drain, does the fault to it and returns the drain's (exit status, stderr); ``Case.finish()``
then runs the drain to the end as the next cron run would.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import psycopg

from tests.support.db import with_settings
from tests.support.private_pg import PrivatePostgres

ROOT = Path(__file__).resolve().parents[2]
FAKE = ROOT / "tests" / "support" / "fake_claude" / "claude"
QUOTE = "It is held that a promise made in writing binds."
RESULT = json.dumps({"halachot": [{"rule": "A written promise binds.", "quote": QUOTE,
                                   "topics": ["contract"]}]})
TEMPLATE = "faults_template"
# The journal and the reconnect switched off: what a fault cost before them (settings).
BASELINE = {"DRAINS_JOURNAL_UNSAFE_OFF": True, "DRAINS_DB_RETRY_SECONDS": 0}


def write_decisions(folder: Path, n: int) -> Path:
    path = folder / "decisions.jsonl"
    path.write_text("".join(
        json.dumps({"external_id": f"x-{i:03d}", "court": "Supreme Court", "case_number": f"CA {i}/25",
                    "decided_on": "2025-02-01", "title": f"Case {i}",
                    "text": f"Decision {i} is given. {QUOTE} So it is ordered."}) + "\n"
        for i in range(1, n + 1)
    ))
    return path


def base_env(url: str, folder: Path, settings: dict[str, object] | None = None,
             **extra: str) -> dict[str, str]:
    """The drain's environment (``extra`` on top) and its settings (``settings`` on top of a chunk
    of 5 and a connect timeout of 3 s)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FAKE_CLAUDE_", "DRAINS_", "HALACHA_", "TEST_EXTRACTOR_", "TEST_SETTINGS"))}
    env.update(
        DATABASE_URL=url, DJANGO_SETTINGS_MODULE="config.settings", PYTHONUNBUFFERED="1",
        DRAINS_VAR_DIR=str(folder / "var"), DRAINS_JOURNAL_DIR=str(folder / "journal"),
        HALACHA_EXTRACTOR="claude-cli", CLAUDE_CLI=str(FAKE), CLAUDE_CONFIG_DIR=str(folder / "claude"),
        HALACHA_CLI_EXTRA_ARGS="", FAKE_CLAUDE_RESULT=RESULT, FAKE_CLAUDE_HANG="0.2",
        FAKE_CLAUDE_CALL_LOG=str(folder / "calls.log"),
    )
    env.update(extra)
    return with_settings(env, **{"DRAINS_CHUNK_SIZE": 5, "DRAINS_DB_CONNECT_TIMEOUT_SECONDS": 3,
                                 **(settings or {})})


def manage(env, *args, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def popen(env, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "manage.py"), *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def make_template(pg: PrivatePostgres, folder: Path, decisions: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    env = base_env(pg.create_database(TEMPLATE), folder)
    for step in (["migrate"], ["import_decisions", str(write_decisions(folder, decisions))]):
        done = manage(env, *step)
        assert done.returncode == 0, done.stdout + done.stderr


class Case:
    """One fault's database (a copy of the template) and its folder."""

    def __init__(self, pg: PrivatePostgres, folder: Path, name: str, decisions: int, *,
                 tablespace: str | None = None, settings: dict[str, object] | None = None,
                 **extra: str):
        self.pg = pg
        self.decisions = decisions
        with pg.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE {TEMPLATE}'
                         + (f" TABLESPACE {tablespace}" if tablespace else ""))
        self.name = name
        self.url = pg.url(name)
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.env = base_env(self.url, folder, settings, **extra)
        self.calls = folder / "calls.log"

    def drain(self, *args: str, **extra: str) -> subprocess.Popen:
        return popen({**self.env, **extra}, "drain_halacha", "--trigger", "manual",
                     "--max-items", "100000", *args)

    def completed_calls(self) -> int:
        return len(self.calls.read_text().splitlines()) if self.calls.exists() else 0

    def wait_calls(self, n: int, timeout: float = 60) -> None:
        limit = time.monotonic() + timeout
        while self.completed_calls() < n:
            assert time.monotonic() < limit, f"fewer than {n} calls within {timeout} s"
            time.sleep(0.02)

    def query(self, statement: str, *args):
        with psycopg.connect(self.url, autocommit=True) as conn:
            return conn.execute(statement, args).fetchall()

    def journal_entries(self) -> int:
        total = 0
        for path in (self.folder / "journal").glob("*.sqlite3"):
            with sqlite3.connect(path) as conn:
                total += conn.execute(
                    "SELECT (SELECT count(*) FROM paid) + (SELECT count(*) FROM failed)"
                ).fetchone()[0]
        return total

    def finish(self) -> subprocess.CompletedProcess:
        """The next run, to the end of the backlog."""
        done = manage(self.env, "drain_halacha", "--trigger", "manual", "--max-items", "100000")
        assert done.returncode == 0, done.stdout + done.stderr
        return done

    def extra_calls(self) -> int:
        return self.completed_calls() - self.decisions

    def assert_promise_kept(self) -> None:
        assert self.completed_calls() == self.decisions  # 0 extra paid calls
        per_decision = self.query(
            "SELECT i.status, count(h.id) FROM halacha_courtdecision d"
            " JOIN drains_item i ON i.drain = 'halacha' AND i.ref = d.id"
            " LEFT JOIN halacha_halacha h ON h.decision_id = d.id GROUP BY d.id, i.status")
        assert len(per_decision) == self.decisions, per_decision
        assert set(per_decision) == {("done", 1)}, per_decision
        assert self.query("SELECT count(*) FROM drains_stagedresult") == [(0,)]
        assert self.journal_entries() == 0
        runs = self.query("SELECT status, items_done, items_failed FROM drains_drainrun"
                          " WHERE drain = 'halacha' ORDER BY id")
        assert sum(done for _, done, _ in runs) == self.decisions, runs  # the rows tell the truth
        assert all(status != "running" for status, _, _ in runs), runs


def failure_lines(stderr: str) -> list[str]:
    """What a command printed that is not a log record: its failure lines."""
    return [line for line in stderr.splitlines()
            if line.strip() and not line[:4].isdigit()]  # log records start with the date


def assert_one_line(stderr: str) -> None:
    lines = failure_lines(stderr)
    assert len(lines) <= 1, stderr
    assert "Traceback" not in stderr and "HINT:" not in stderr and "run ?" not in stderr, stderr


# --- the faults: each returns the faulted drain's (exit status, stderr) ----------------------


def fault_fast_restart(c: Case, at_call: int = 8) -> tuple[int, str]:
    drain = c.drain()
    c.wait_calls(at_call)
    c.pg.restart("fast")
    _, err = drain.communicate(timeout=180)
    return drain.returncode, err


def fault_immediate_shutdown(c: Case, at_call: int = 10) -> tuple[int, str]:
    drain = c.drain("--concurrency", "4", FAKE_CLAUDE_HANG="0.5")
    c.wait_calls(at_call)
    c.pg.stop("immediate")
    time.sleep(1.0)  # the calls in flight come back to a database that is gone
    c.pg.start()  # crash recovery
    _, err = drain.communicate(timeout=180)
    return drain.returncode, err


def fault_locked_staging(c: Case, at_call: int = 5, hold: float = 3.0) -> tuple[int, str, str]:
    """Another session holds drains_stagedresult locked for ``hold`` seconds while the drain
    stages and a supervisor tick runs; the server's statement_timeout is the drains' 1 s
    (set for the case). Returns (drain status, drain stderr, tick stderr)."""
    drain = c.drain()
    c.wait_calls(at_call)
    with psycopg.connect(c.url) as locker:
        locker.execute("LOCK TABLE drains_stagedresult IN ACCESS EXCLUSIVE MODE")
        tick = manage(c.env, "supervise_drains")
        time.sleep(max(0.0, hold))
        locker.rollback()
    _, err = drain.communicate(timeout=180)
    return drain.returncode, err, tick.stderr


@contextmanager
def small_tablespace(pg: PrivatePostgres, size: str = "48m"):
    """A tablespace on a tmpfs of ``size`` (as root: mount); yields (its name, the mount)."""
    small = pg.base / "small"  # a folder the server's user can reach
    small.mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(small)], check=True)
    try:
        (small / "ts").mkdir()
        pg.owned(small / "ts")
        with pg.admin() as conn:
            conn.execute("DROP TABLESPACE IF EXISTS small")
            conn.execute(f"CREATE TABLESPACE small LOCATION '{small / 'ts'}'")
        yield "small", small
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)


def big_answer() -> str:
    """A fake CLI answer of 64 KB that does not compress: every staging write needs new pages."""
    padding = base64.b64encode(os.urandom(48_000)).decode()
    return json.dumps({"type": "result", "subtype": "success", "is_error": False,
                       "result": RESULT, "total_cost_usd": 0.01, "padding": padding,
                       "usage": {"input_tokens": 100, "output_tokens": 10}})


def fill(folder: Path) -> Path:
    """Fill the file system of ``folder`` to its last block; returns the filler to delete."""
    filler = folder / "filler"
    with open(filler, "ab") as f:
        while True:
            try:
                f.write(b"\0" * (1 << 20))
                f.flush()
            except OSError:
                break
    return filler


def fault_full_disk(c: Case, mount: Path, at_call: int = 4) -> tuple[int, str]:
    """The database's disk fills up mid-drain and stays full past the retries."""
    drain = c.drain()
    c.wait_calls(at_call)
    filler = fill(mount)
    _, err = drain.communicate(timeout=180)
    filler.unlink()
    return drain.returncode, err


def fault_kill_9(c: Case, record: Path, at_call: int = 3) -> tuple[int, int]:
    """SIGKILL to the drain alone (not its process group) while a call is in flight. Returns
    (the CLI's pid, the calls completed at the kill)."""
    drain = c.drain(FAKE_CLAUDE_HANG="1.0", FAKE_CLAUDE_RECORD=str(record))
    c.wait_calls(at_call)
    time.sleep(0.3)  # the next call is in flight
    cli_pid = int((record / "pid").read_text())
    calls = c.completed_calls()
    os.kill(drain.pid, signal.SIGKILL)
    drain.communicate(timeout=30)
    return cli_pid, calls


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False
