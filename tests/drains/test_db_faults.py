"""Database faults under a running drain: nothing paid for is lost, nothing is paid twice.

A PostgreSQL server of the test's own (tests/support/private_pg.py, Debian's binaries), the real
``drain_halacha`` command as a child process, the claude-cli backend running the fake CLI
(tests/support/fake_claude) whose call log counts the calls that completed, i.e. were paid for.
For each fault: completed calls equal decisions (0 extra), every decision done once with one
halacha, no staged row and no journal entry left, the run rows' counts add up to what was done,
and every failure a command reports is one line.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest

from tests.support.db import ROOT
from tests.support.private_pg import PrivatePostgres

pytestmark = pytest.mark.slow

FAKE = ROOT / "tests" / "support" / "fake_claude" / "claude"
QUOTE = "It is held that a promise made in writing binds."
RESULT = json.dumps({"halachot": [{"rule": "A written promise binds.", "quote": QUOTE,
                                   "topics": ["contract"]}]})
TEMPLATE = "faults_template"
DECISIONS = 30


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One private server per module; a migrated template database with DECISIONS decisions."""
    with PrivatePostgres() as pg:
        url = pg.create_database(TEMPLATE)
        work = tmp_path_factory.mktemp("faults-template")
        env = base_env(url, work)
        for step in (["migrate"], ["import_decisions", str(write_decisions(work))]):
            done = manage(env, *step)
            assert done.returncode == 0, done.stdout + done.stderr
        yield pg


def write_decisions(folder: Path) -> Path:
    path = folder / "decisions.jsonl"
    path.write_text("".join(
        json.dumps({"external_id": f"x-{i:03d}", "court": "Supreme Court", "case_number": f"CA {i}/25",
                    "decided_on": "2025-02-01", "title": f"Case {i}",
                    "text": f"Decision {i} is given. {QUOTE} So it is ordered."}) + "\n"
        for i in range(1, DECISIONS + 1)
    ))
    return path


def base_env(url: str, folder: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FAKE_CLAUDE_", "DRAINS_", "HALACHA_"))}
    env.update(
        DATABASE_URL=url, DJANGO_SETTINGS_MODULE="config.settings", PYTHONUNBUFFERED="1",
        DRAINS_VAR_DIR=str(folder / "var"), DRAINS_JOURNAL_DIR=str(folder / "journal"),
        HALACHA_EXTRACTOR="claude-cli", CLAUDE_CLI=str(FAKE), CLAUDE_CONFIG_DIR=str(folder / "claude"),
        HALACHA_CLI_EXTRA_ARGS="", FAKE_CLAUDE_RESULT=RESULT, FAKE_CLAUDE_HANG="0.2",
        FAKE_CLAUDE_CALL_LOG=str(folder / "calls.log"), DRAINS_CHUNK_SIZE="5",
        DRAINS_DB_CONNECT_TIMEOUT_SECONDS="3",
    )
    env.update(extra)
    return env


def manage(env, *args, timeout=180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def popen(env, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "manage.py"), *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


class Case:
    """One test's database (a copy of the template) and its folder."""

    def __init__(self, pg: PrivatePostgres, folder: Path, name: str, *, tablespace=None, **extra):
        self.pg = pg
        with pg.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE {TEMPLATE}'
                         + (f" TABLESPACE {tablespace}" if tablespace else ""))
        self.name = name
        self.url = pg.url(name)
        self.folder = folder
        self.env = base_env(self.url, folder, **extra)
        self.calls = folder / "calls.log"

    def drain(self, *args: str, **extra) -> subprocess.Popen:
        return popen({**self.env, **extra}, "drain_halacha", "--trigger", "manual",
                     "--max-items", "1000", *args)

    def completed_calls(self) -> int:
        return len(self.calls.read_text().splitlines()) if self.calls.exists() else 0

    def wait_calls(self, n: int, timeout: float = 60) -> None:
        limit = time.monotonic() + timeout
        while self.completed_calls() < n:
            assert time.monotonic() < limit, f"fewer than {n} calls within {timeout} s"
            time.sleep(0.02)

    def query(self, sql: str, *args):
        with psycopg.connect(self.url, autocommit=True) as conn:
            return conn.execute(sql, args).fetchall()

    def journal_entries(self) -> int:
        total = 0
        for path in (self.folder / "journal").glob("*.sqlite3"):
            with sqlite3.connect(path) as conn:
                total += conn.execute("SELECT count(*) FROM paid").fetchone()[0]
        return total

    def finish(self, *, runs_before: int = 0) -> None:
        """Run the drain to the end (the next cron run), then check the promise."""
        done = manage(self.env, "drain_halacha", "--trigger", "manual", "--max-items", "1000")
        assert done.returncode == 0, done.stdout + done.stderr
        self.assert_promise_kept()

    def assert_promise_kept(self) -> None:
        assert self.completed_calls() == DECISIONS  # 0 extra paid calls
        per_decision = self.query(
            "SELECT d.status, count(h.id) FROM halacha_courtdecision d"
            " LEFT JOIN halacha_halacha h ON h.decision_id = d.id GROUP BY d.id, d.status")
        assert len(per_decision) == DECISIONS and set(per_decision) == {("done", 1)}, per_decision
        assert self.query("SELECT count(*) FROM drains_stagedresult") == [(0,)]
        assert self.journal_entries() == 0
        runs = self.query("SELECT status, items_done, items_failed FROM drains_drainrun"
                          " WHERE drain = 'halacha' ORDER BY id")
        assert sum(done for _, done, _ in runs) == DECISIONS, runs  # the rows tell the truth
        assert all(status != "running" for status, _, _ in runs), runs


def failure_lines(text: str) -> list[str]:
    """What a command said about failures: every line but the progress and log lines."""
    return [line for line in text.splitlines()
            if line.strip() and ("Error" in line or "error" in line or "failed" in line)]


def assert_one_line(stderr: str) -> None:
    errors = [line for line in stderr.splitlines() if line.startswith("CommandError") or
              "Traceback" in line or line.startswith(("HINT", "DETAIL", "  "))]
    assert not [line for line in errors if not line.startswith("CommandError")], stderr
    assert len([line for line in errors if line.startswith("CommandError")]) <= 1, stderr
    assert "run ?" not in stderr


@pytest.fixture
def case(server, tmp_path, request):
    made = []

    def make(**extra) -> Case:
        c = Case(server, tmp_path, f"f_{request.node.name[5:40]}", **extra)
        made.append(c)
        return c

    yield make
    if server.pg_ctl("status", check=False).returncode != 0:
        server.start()


# --- the faults -------------------------------------------------------------------------------


def test_fast_restart_mid_drain__no_paid_call_lost(case, server):
    c = case()
    drain = c.drain()
    c.wait_calls(8)
    server.restart("fast")
    out, err = drain.communicate(timeout=120)
    assert_one_line(err)
    c.finish()


def test_immediate_shutdown_at_concurrency_4__the_calls_in_flight_are_kept(case, server):
    c = case(FAKE_CLAUDE_HANG="0.5")
    drain = c.drain("--concurrency", "4")
    c.wait_calls(10)
    server.stop("immediate")
    time.sleep(1.0)  # calls in flight come back to a database that is gone
    server.start()  # crash recovery
    out, err = drain.communicate(timeout=120)
    assert_one_line(err)
    c.finish()


def test_statement_timeout_on_a_locked_staging_table__retried_then_done(case):
    c = case(DRAINS_DB_STATEMENT_TIMEOUT_MS="1000", DRAINS_DB_LOCK_TIMEOUT_MS="0")
    drain = c.drain()
    c.wait_calls(5)
    with psycopg.connect(c.url) as locker:
        locker.execute("LOCK TABLE drains_stagedresult IN ACCESS EXCLUSIVE MODE")
        tick = manage({**c.env, "DRAINS_DB_STATEMENT_TIMEOUT_MS": "1000"}, "supervise_drains")
        time.sleep(3.0)
        locker.rollback()
    out, err = drain.communicate(timeout=120)
    assert drain.returncode == 0, out + err
    assert_one_line(tick.stderr)
    c.assert_promise_kept()


def test_full_disk__the_paid_item_waits_in_the_journal(case, server, tmp_path):
    small = server.base / "small"  # a folder the server's user can reach
    small.mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(small)], check=True)
    try:
        (small / "ts").mkdir()
        server.owned(small / "ts")
        with server.admin() as conn:
            conn.execute("DROP TABLESPACE IF EXISTS small")
            conn.execute(f"CREATE TABLESPACE small LOCATION '{small / 'ts'}'")
        # Answers of 64 KB that do not compress: every staging write needs new pages.
        padding = base64.b64encode(os.urandom(48_000)).decode()
        answer = json.dumps({"type": "result", "subtype": "success", "is_error": False,
                             "result": RESULT, "total_cost_usd": 0.01, "padding": padding,
                             "usage": {"input_tokens": 100, "output_tokens": 10}})
        c = case(tablespace="small", DRAINS_DB_RETRY_SECONDS="4", FAKE_CLAUDE_STDOUT=answer)
        drain = c.drain()
        c.wait_calls(4)
        filler = small / "filler"
        subprocess.run(["fallocate", "-l", "100G", str(filler)], capture_output=True)
        free = os.statvfs(small)
        with open(filler, "ab") as f:  # fill what fallocate left, to the last block
            left = free.f_bavail * free.f_frsize
            while left > 0:
                chunk = min(left, 1 << 20)
                try:
                    f.write(b"\0" * chunk)
                    f.flush()
                except OSError:
                    break
                left -= chunk
        out, err = drain.communicate(timeout=120)
        assert drain.returncode != 0, out + err  # the disk stayed full past the retries
        assert_one_line(err)
        assert "HINT" not in err
        filler.unlink()
        c.finish()
        with server.admin() as conn:
            conn.execute(f'DROP DATABASE "{c.name}"')
            conn.execute("DROP TABLESPACE small")
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)


def test_kill_9_of_the_drain_alone__its_cli_child_dies_with_it(case, tmp_path):
    record = tmp_path / "record"
    record.mkdir()
    c = case(FAKE_CLAUDE_HANG="1.0", FAKE_CLAUDE_RECORD=str(record))
    drain = c.drain()
    c.wait_calls(3)
    time.sleep(0.3)  # the fourth call is in flight
    cli_pid = int((record / "pid").read_text())
    os.kill(drain.pid, signal.SIGKILL)  # the drain alone, not its process group
    drain.communicate(timeout=30)
    limit = time.monotonic() + 5
    while _alive(cli_pid):
        assert time.monotonic() < limit, "the CLI child outlived its drain"
        time.sleep(0.05)
    calls = c.completed_calls()
    time.sleep(1.5)
    assert c.completed_calls() == calls  # nobody finished a call that nobody would collect
    c.finish()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_a_server_that_accepts_and_never_answers__one_line_within_the_bound(tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held = []
    stop = threading.Event()

    def accept():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    threading.Thread(target=accept, daemon=True).start()
    url = f"postgresql://postgres@127.0.0.1:{listener.getsockname()[1]}/silent"
    env = base_env(url, tmp_path, DRAINS_DB_CONNECT_TIMEOUT_SECONDS="2")
    try:
        for command in (["drain_halacha", "--trigger", "manual"], ["supervise_drains"]):
            started = time.monotonic()
            done = manage(env, *command, timeout=60)
            took = time.monotonic() - started
            assert done.returncode != 0 and took < 20, (took, done.stdout, done.stderr)
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            assert len(lines) == 1 and "timeout" in lines[0].lower(), done.stderr
    finally:
        stop.set()
        for conn in held:
            conn.close()
        listener.close()


def test_only_the_lock_session_ends__no_further_paid_call_and_no_promotion(case):
    """pg_terminate_backend on the run's lock session alone; its other connection stays."""
    c = case(FAKE_CLAUDE_HANG="0.3", DRAINS_CHUNK_SIZE="50")
    drain = c.drain()
    c.wait_calls(3)
    (lock_pid,) = c.query("SELECT backend_pid FROM drains_drainrun WHERE status = 'running'")[0]
    others = c.query("SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'drains@%%'"
                     " AND pid <> %s", lock_pid)
    assert others, "the run's own connection"
    assert c.query("SELECT pg_terminate_backend(%s)", lock_pid) == [(True,)]
    paid_then = c.completed_calls()
    out, err = drain.communicate(timeout=60)
    assert drain.returncode == 1 and "lock_lost" in err, out + err
    assert_one_line(err)
    assert c.completed_calls() <= paid_then + 1  # at most the call that was in flight
    done = c.query("SELECT count(*) FROM halacha_courtdecision WHERE status = 'done'")[0][0]
    assert done <= paid_then  # the call in flight was staged, not promoted
    c.finish()
