"""Database faults under a running drain: nothing paid for is lost, nothing is paid twice.

A PostgreSQL server of the test's own (tests/support/private_pg.py, Debian's binaries), the real
``drain_halacha`` command as a child process, the claude-cli backend running the fake CLI whose
call log counts the calls that completed (tests/support/db_faults.py holds the faults, shared
with bench/db_faults.py). For each fault: completed calls equal decisions (0 extra), every
decision done once with one halacha, no staged row and no journal entry left, the run rows'
counts add up to what was done and none is left ``running``, and every failure a command
reports is one line.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from tests.support import db_faults as faults
from tests.support.private_pg import PrivatePostgres

pytestmark = pytest.mark.slow
DECISIONS = 30


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with PrivatePostgres() as pg:
        faults.make_template(pg, tmp_path_factory.mktemp("faults-template"), DECISIONS)
        yield pg


@pytest.fixture
def case(server, tmp_path, request):
    def make(**extra) -> faults.Case:  # settings={...} for the drains' settings
        return faults.Case(server, tmp_path, f"f_{request.node.name[5:40]}", DECISIONS, **extra)

    yield make
    if server.pg_ctl("status", check=False).returncode != 0:
        server.start()


def test_fast_restart_mid_drain__no_paid_call_lost(case):
    c = case()
    status, err = faults.fault_fast_restart(c)
    faults.assert_one_line(err)
    c.finish()
    c.assert_promise_kept()


def test_immediate_shutdown_at_concurrency_4__the_calls_in_flight_are_kept(case):
    c = case()
    status, err = faults.fault_immediate_shutdown(c)
    assert status == 1
    faults.assert_one_line(err)
    c.finish()
    c.assert_promise_kept()


def test_statement_timeout_on_a_locked_staging_table__retried_then_done(case):
    c = case(settings={"DRAINS_DB_STATEMENT_TIMEOUT_MS": 1000, "DRAINS_DB_LOCK_TIMEOUT_MS": 0})
    status, err, tick_err = faults.fault_locked_staging(c)
    assert status == 0, err  # the same run went on once the lock was gone
    faults.assert_one_line(tick_err)
    c.assert_promise_kept()
    assert "retrying" in err


def test_full_disk__the_paid_item_waits_in_the_journal(case, server):
    with faults.small_tablespace(server) as (tablespace, mount):
        c = case(tablespace=tablespace, settings={"DRAINS_DB_RETRY_SECONDS": 4},
                 FAKE_CLAUDE_STDOUT=faults.big_answer())
        status, err = faults.fault_full_disk(c, mount)
        assert status == 1, err  # the disk stayed full past the retries
        faults.assert_one_line(err)
        assert faults.failure_lines(err)[0].startswith("CommandError: halacha: run 1 failed")
        c.finish()
        c.assert_promise_kept()
        with server.admin() as conn:
            conn.execute(f'DROP DATABASE "{c.name}"')
            conn.execute(f"DROP TABLESPACE {tablespace}")


def test_kill_9_of_the_drain_alone__its_cli_child_dies_with_it(case, tmp_path):
    record = tmp_path / "record"
    record.mkdir()
    c = case()
    cli_pid, _ = faults.fault_kill_9(c, record)
    limit = time.monotonic() + 5
    while faults.alive(cli_pid):
        assert time.monotonic() < limit, "the CLI child outlived its drain"
        time.sleep(0.05)
    calls = c.completed_calls()
    time.sleep(1.5)
    assert c.completed_calls() == calls  # nobody finished a call that nobody would collect
    c.finish()
    c.assert_promise_kept()


def test_only_the_lock_session_ends__no_further_paid_call_and_no_promotion(case):
    """pg_terminate_backend on the run's lock session alone; its other connection stays."""
    c = case(FAKE_CLAUDE_HANG="0.3", settings={"DRAINS_CHUNK_SIZE": 50})
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
    faults.assert_one_line(err)
    assert c.completed_calls() <= paid_then + 1  # at most the call that was in flight
    done = c.query("SELECT count(*) FROM drains_item WHERE drain = 'halacha' AND status = 'done'")[0][0]
    assert done <= paid_then  # the call in flight was staged, not promoted
    c.finish()
    c.assert_promise_kept()


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

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    url = f"postgresql://postgres@127.0.0.1:{listener.getsockname()[1]}/silent"
    env = faults.base_env(url, tmp_path, {"DRAINS_DB_CONNECT_TIMEOUT_SECONDS": 2})
    try:
        for command in (["drain_halacha", "--trigger", "manual"], ["supervise_drains"]):
            started = time.monotonic()
            done = faults.manage(env, *command, timeout=60)
            took = time.monotonic() - started
            assert done.returncode != 0 and took < 20, (took, done.stdout, done.stderr)
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            assert len(lines) == 1 and "DRAINS_DB_CONNECT_TIMEOUT_SECONDS" in lines[0], done.stderr
    finally:
        stop.set()
        acceptor.join()
        for conn in held:
            conn.close()
        listener.close()


def test_a_full_journal_disk_stops_the_run_before_its_next_call(case, tmp_path):
    """The journal's own disk (a 2 MB tmpfs) fills up: one line, no further call; the result in
    hand is staged directly; once there is room the next run goes on."""
    import subprocess

    journal = tmp_path / "journal"
    journal.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(journal)], check=True)
    try:
        c = case(FAKE_CLAUDE_STDOUT=faults.big_answer())
        drain = c.drain()
        c.wait_calls(3)
        filler = faults.fill(journal)
        paid_then = c.completed_calls()
        out, err = drain.communicate(timeout=60)
        assert drain.returncode == 1, out + err
        faults.assert_one_line(err)
        assert "cannot write the journal of paid results" in faults.failure_lines(err)[0], err
        assert c.completed_calls() <= paid_then + 1  # stopped before its next call
        filler.unlink()
        c.finish()
        c.assert_promise_kept()
    finally:
        subprocess.run(["umount", "-l", str(journal)], check=False)
