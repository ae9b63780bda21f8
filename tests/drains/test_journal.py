"""The local journal of paid results and the reconnect around staging (drains/journal.py,
drains/dbretry.py, their hooks in drains/runner/loop.py and drains/runs.py).

In-process, on the real test database: a real fault hits staging right after a call returned —
another session holds ``drains_stagedresult`` locked (``LOCK TABLE … ACCESS EXCLUSIVE``), so the
runner's staging write ends in ``lock_timeout``. The call log counts paid calls.
"""

from __future__ import annotations

import sqlite3
import threading

import pytest
from django.db import connection

from drains.dbretry import database_failure_line, is_transient
from drains.journal import Journal, JournalError, journal_path, open_journal
from drains.models import DrainRun, StagedResult, Trigger
from drains.runner import DrainRunFailed, run_drain
from halacha.models import Halacha
from tests import factories
from tests.support.db import admin_connect
from tests.support.extractors import HookExtractor, read_call_log
from tests.support.items import count, statuses

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def call_log(tmp_path, monkeypatch, settings):
    path = tmp_path / "calls.log"
    monkeypatch.setenv("TEST_EXTRACTOR_CALL_LOG", str(path))
    settings.HALACHA_EXTRACTOR = "tests.support.extractors:HookExtractor"
    settings.DRAINS_DB_LOCK_TIMEOUT_MS = 200
    yield path
    HookExtractor.hook = None


def drain(**kwargs):
    return run_drain("halacha", trigger=Trigger.MANUAL, tty=False, **kwargs)


def called(path) -> list[int]:
    return [pk for _, _, pk, _ in read_call_log(path)] if path.exists() else []


class TableLock:
    """Another session holds the staging table locked from the n-th call on, until released."""

    def __init__(self, at_call: int, *, release_after: float | None = None):
        self.at_call = at_call
        self.release_after = release_after
        self.calls = 0
        self.conn = None

    def __call__(self, decision) -> None:
        self.calls += 1
        if self.calls != self.at_call:
            return
        self.conn = admin_connect(connection.settings_dict["NAME"])
        self.conn.autocommit = False
        self.conn.execute("LOCK TABLE drains_stagedresult IN ACCESS EXCLUSIVE MODE")
        if self.release_after is not None:
            threading.Timer(self.release_after, self.release).start()

    def release(self) -> None:
        if self.conn is not None:
            self.conn.rollback()
            self.conn.close()
            self.conn = None


def assert_each_decision_done_once(decisions, log) -> None:
    paid = called(log)
    assert sorted(paid) == sorted(d.pk for d in decisions), paid  # 0 extra calls
    assert set(statuses()) == {"done"}
    for d in decisions:
        assert Halacha.objects.filter(decision=d).count() == 1
    assert not StagedResult.objects.exists()
    assert open_journal().count() == 0


def test_staging_that_fails_keeps_the_result_in_the_journal_and_the_next_run_replays_it(
    call_log, settings
):
    settings.DRAINS_DB_RETRY_SECONDS = 0.5
    decisions = factories.make_decisions(5)
    lock = TableLock(at_call=3)
    HookExtractor.hook = lock
    try:
        with pytest.raises(DrainRunFailed) as failed:
            drain()
    finally:
        lock.release()
    message = str(failed.value)
    assert "\n" not in message and "lock timeout" in message and "journal" in message, message
    assert called(call_log) == [d.pk for d in decisions[:3]]  # stopped before any further call
    entries = open_journal().entries("halacha")
    assert [e.item_key for e in entries] == [str(decisions[2].pk)]
    first = DrainRun.objects.get()
    assert (first.status, first.items_done) == ("failed", 2)  # the final counts were recorded

    result = drain()

    assert result.status == "succeeded" and result.done == 2
    assert_each_decision_done_once(decisions, call_log)
    first.refresh_from_db()
    assert first.items_done == 3  # the replay counted the item its run had paid for


def test_staging_blocked_for_a_moment_is_retried_and_the_run_goes_on(call_log, settings):
    settings.DRAINS_DB_RETRY_SECONDS = 20
    decisions = factories.make_decisions(5)
    HookExtractor.hook = lock = TableLock(at_call=2, release_after=1.5)
    try:
        result = drain()
    finally:
        lock.release()
    assert result.status == "succeeded" and result.done == 5
    assert_each_decision_done_once(decisions, call_log)
    assert DrainRun.objects.get().items_done == 5


def test_a_journal_that_cannot_be_written_stops_the_run_before_the_next_call(
    call_log, settings, tmp_path
):
    decisions = factories.make_decisions(4)
    journal = open_journal()

    def break_journal(decision):
        if len(called(call_log)) == 2:  # from the second call on, the journal refuses writes
            journal._conn.execute("PRAGMA query_only = ON")

    HookExtractor.hook = break_journal
    try:
        with pytest.raises(DrainRunFailed) as failed:
            drain()
    finally:
        journal._conn.execute("PRAGMA query_only = OFF")
    message = str(failed.value)
    assert "\n" not in message and "cannot write the journal of paid results" in message, message
    assert called(call_log) == [d.pk for d in decisions[:2]]
    # the result in hand was not lost: staged directly and promoted
    assert count("halacha", status="done") == 2
    assert DrainRun.objects.get().items_done == 2


def test_journal_survives_the_process_and_forgets_only_what_it_is_told(tmp_path):
    path = tmp_path / "j.sqlite3"
    journal = Journal(path)
    journal.record(drain="d", item_key="1", run_id=7, payload={"a": 1}, usage={"input_tokens": 3})
    journal.record(drain="d", item_key="1", run_id=8, payload={"a": 2}, usage={})  # first wins
    journal.record(drain="d", item_key="2", run_id=7, payload=[1], usage=None)
    journal.close()
    again = Journal(path)
    assert [(e.item_key, e.run_id, e.payload) for e in again.entries("d")] == [
        ("1", 7, {"a": 1}), ("2", 7, [1])
    ]
    again.forget("d", ["1"])
    assert again.keys("d") == {"2"} and again.entries("other") == []
    # WAL with a full sync per commit (durable at each commit, not only at checkpoints)
    assert again._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert again._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # kept in the file


def test_journal_in_an_unwritable_place_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(JournalError) as failed:
        Journal(blocker / "j.sqlite3")
    assert "\n" not in str(failed.value) and "DRAINS_JOURNAL_DIR" in str(failed.value)


def test_journal_lives_in_the_setting_one_file_per_host(settings, tmp_path):
    settings.DRAINS_JOURNAL_DIR = tmp_path / "jj"
    assert journal_path().parent == tmp_path / "jj" and journal_path().suffix == ".sqlite3"


def test_database_failure_line_drops_libpq_detail_and_hint():
    with admin_connect(connection.settings_dict["NAME"]) as conn:
        try:
            conn.execute("DO $$ BEGIN RAISE EXCEPTION 'boom' USING DETAIL = 'd', HINT = 'h'; END $$")
        except Exception as exc:  # noqa: BLE001 - the real error object is what is described
            line = database_failure_line(exc)
            assert not is_transient(exc)
    assert "\n" not in line and "boom" in line and "HINT" not in line


def test_the_supervisor_moves_a_dead_runs_journal_entries_to_staging_and_promotes_them(call_log):
    from drains.supervisor import supervise
    from tests.support.extractors import first_sentence

    (decision,) = factories.make_decisions(1)
    run = factories.make_run(status="failed", items_done=0)
    open_journal().record(
        drain="halacha", item_key=str(decision.pk), run_id=run.pk, usage={"input_tokens": 5},
        payload={"extractor": "journaled", "model": "m", "halachot": [
            {"rule": "R.", "quote": first_sentence(decision.text), "topics": ["contract"]}]},
    )
    lines = []
    supervise(names=["halacha"], write=lines.append)

    assert any("1 from this host's journal" in line for line in lines), lines
    assert open_journal().count() == 0 and not StagedResult.objects.exists()
    assert list(decision.halachot.values_list("extractor", flat=True)) == ["journaled"]
    run.refresh_from_db()
    assert (run.items_done, run.input_tokens) == (1, 5)
    assert called(call_log) == []


def test_what_is_transient():
    import psycopg

    from drains.dbretry import DatabaseUnavailable
    from drains.staging import PromotionError

    lost = psycopg.OperationalError("server closed the connection unexpectedly")
    assert is_transient(lost)
    wrapped = PromotionError("halacha", "1", lost)
    wrapped.__cause__ = lost
    assert is_transient(wrapped)  # a promotion cut off by the database goes again
    assert not is_transient(PromotionError("halacha", "1", KeyError("quote")))
    assert not is_transient(DatabaseUnavailable("spent"))
    assert not is_transient(ValueError("x"))


def test_a_failed_call_in_the_journal_is_counted_on_its_run_by_the_replay(tmp_path):
    from drains.staging import replay_journal

    run = factories.make_run(status="crashed", items_done=3, items_failed=1)
    journal = Journal(tmp_path / "j.sqlite3")
    journal.record_failure(drain="halacha", item_key="7", run_id=run.pk,
                           usage={"input_tokens": 4, "cost_usd": 0.5})
    assert [(e.item_key, e.run_id, e.usage["input_tokens"]) for e in journal.failures("halacha")] \
        == [("7", run.pk, 4)]
    assert journal.keys("halacha") == set() and journal.count() == 1  # nothing to stage

    assert replay_journal(drain_name="halacha", journal=journal) == 0
    run.refresh_from_db()
    assert (run.items_done, run.items_failed, run.input_tokens) == (3, 2, 4)
    assert journal.count() == 0 and not StagedResult.objects.exists()
    journal.record_failure(drain="halacha", item_key="8", run_id=run.pk, usage=None)
    journal.forget("halacha", ["8"])  # the checkpoint that counted it
    assert journal.count() == 0


def test_the_replay_of_a_failed_call_keeps_a_paid_result_for_the_same_item(tmp_path):
    """An item whose first call failed and whose next call was paid for, both still in the
    journal: counting the failure must not forget the paid result before it is staged."""
    from drains.staging import replay_journal

    run = factories.make_run(status="crashed", items_done=0, items_failed=0)
    journal = Journal(tmp_path / "j.sqlite3")
    journal.record_failure(drain="halacha", item_key="7", run_id=run.pk, usage=None)
    journal.record(drain="halacha", item_key="7", run_id=run.pk,
                   payload={"halachot": []}, usage=None)
    assert replay_journal(drain_name="halacha", journal=journal) == 1
    run.refresh_from_db()
    assert (run.items_done, run.items_failed) == (1, 1)
    assert StagedResult.objects.filter(drain="halacha", item_key="7").exists()
    assert journal.count() == 0
