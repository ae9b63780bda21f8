"""Fencing: a run that lost its drain lock stops before its next paid call and promotes nothing.

Host B's extractor blocks. The supervisor on host A finds B's run hung, stops it with
pg_terminate_backend (B is another host) and starts a new run on A. Then B's blocked call
returns: B must make no further extractor call and promote nothing — its promotion is fenced
by its run no longer running, and its lock check before the next call sees the session gone.
The call log shows no decision paid for twice beyond the one call that was in flight.
"""

from __future__ import annotations

import json
import time
from collections import Counter

import psycopg
import pytest

from tests.support.db import database_url
from tests.support.extractors import read_call_log
from tests.support.gate_db import fresh_database
from tests.support.hosts import Host

pytestmark = pytest.mark.slow
DECISIONS = 12


def wait_for(predicate, what: str, timeout: float = 60):
    limit = time.monotonic() + timeout
    while time.monotonic() < limit:
        if value := predicate():
            return value
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {what}")


def test_a_hung_run_on_another_host_wakes_up_fenced_no_call_and_no_promotion(tmp_path, django_db_blocker):
    decisions = tmp_path / "decisions.jsonl"
    decisions.write_text("".join(
        json.dumps({"external_id": f"f-{i:02d}", "court": "Supreme Court", "case_number": f"CA {i}/25",
                    "decided_on": "2025-02-01", "title": f"Case {i}",
                    "text": f"Decision {i} holds. It is held that rule {i} binds." + (" BLOCKHERE" if i == 1 else "")})
        + "\n" for i in range(1, DECISIONS + 1)
    ))
    calls, release = tmp_path / "calls.log", tmp_path / "release"
    common = {"TEST_EXTRACTOR_CALL_LOG": str(calls), "TEST_EXTRACTOR_SLEEP": "0.3"}
    with django_db_blocker.unblock(), fresh_database("fence") as dbname:
        url = database_url(dbname)
        host_a = Host("host-a", tmp_path, url, HALACHA_EXTRACTOR="tests.support.extractors:SleepingExtractor",
                      settings={"DRAINS_CHUNK_SIZE": 4, "DRAINS_HUNG_AFTER_SECONDS": 2}, **common)
        host_b = Host("host-b", tmp_path, url,
                      HALACHA_EXTRACTOR="tests.support.supervisor_extractors:BlockUntilReleasedExtractor",
                      TEST_EXTRACTOR_BLOCK_MARK="BLOCKHERE", TEST_EXTRACTOR_RELEASE=str(release),
                      settings={"DRAINS_CHUNK_SIZE": 4}, **common)
        for step in (["migrate"], ["import_decisions", str(decisions)], ["burst", "halacha", "on"]):
            done = host_a.run(*step)
            assert done.returncode == 0, done.stdout + done.stderr

        drain_b = host_b.popen("drain_halacha", "--trigger", "manual")
        try:
            wait_for(lambda: any(c[3] == "block" for c in read_call_log(calls)), "B's blocked call")
            b_pid = read_call_log(calls)[0][1]
            time.sleep(2.5)  # past the hung threshold without a checkpoint
            tick = host_a.run("supervise_drains")
            assert tick.returncode == 0, tick.stdout + tick.stderr
            with psycopg.connect(url, autocommit=True) as conn:
                b_run = conn.execute("SELECT id, status FROM drains_drainrun WHERE host = 'host-b'").fetchone()
                assert b_run[1] == "hung", tick.stdout
                # A's run is paying for decisions now; then B's blocked call comes back
                wait_for(lambda: [c for c in read_call_log(calls) if c[1] != b_pid], "A's first call")
                release.write_text("")
                drain_b.communicate(timeout=60)
                wait_for(lambda: conn.execute(
                    "SELECT status FROM drains_drainrun WHERE host = 'host-a' AND drain = 'halacha'"
                    " AND status <> 'running'").fetchone(), "A's run to finish", 120)
                # the staged result B paid for is promoted once, by the next one to find it
                again = host_a.run("supervise_drains")
                assert again.returncode == 0, again.stdout + again.stderr
                b_after = conn.execute("SELECT status, items_done FROM drains_drainrun WHERE id = %s",
                                       (b_run[0],)).fetchone()
                per_decision = conn.execute(
                    "SELECT d.external_id, count(h.id) FROM halacha_courtdecision d"
                    " LEFT JOIN halacha_halacha h ON h.decision_id = d.id GROUP BY d.external_id"
                ).fetchall()
                statuses = {s for (s,) in conn.execute(
                    "SELECT status FROM drains_item WHERE drain = 'halacha'")}
                staged = conn.execute("SELECT count(*) FROM drains_stagedresult").fetchone()[0]
        finally:
            if drain_b.poll() is None:
                drain_b.kill()
                drain_b.communicate()

    log = read_call_log(calls)
    b_calls = [c for c in log if c[1] == b_pid]
    assert len(b_calls) == 1, b_calls  # woken up, B made no further call
    paid = Counter(pk for _, _, pk, _ in log)
    twice = [pk for pk, n in paid.items() if n > 1]
    assert len(paid) == DECISIONS and len(twice) <= 1 and twice == [b_calls[0][2]], paid
    assert b_after == ("hung", 0)  # B promoted nothing and its end did not overwrite "hung"
    assert statuses == {"done"} and {n for _, n in per_decision} == {1}, per_decision
    assert staged == 0
