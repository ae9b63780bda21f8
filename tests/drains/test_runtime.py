"""The drain runtime in-process: runs, checkpoints, staging, promotion, stop conditions, locks.

Real PostgreSQL with committed rows (``transactional_db``), the real halacha drain, and the test
extractors of tests/support/extractors.py chosen through HALACHA_EXTRACTOR. What a test must see
from outside the running loop (a committed checkpoint, a staged row) it reads on a second
connection. Real processes (kills, two runners, signals from outside) are in
test_runtime_processes.py.
"""

from __future__ import annotations

import io
import logging
import os
import signal
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command, load_command_class
from django.core.management.base import CommandError
from django.db import connection, reset_queries
from django.utils import timezone
from freezegun import freeze_time

from drains.bursts import DEFAULT_DEADLINE, set_drain_burst
from drains.locks import DrainLock, drain_lock_holders
from drains.models import (
    DrainControl,
    DrainEvent,
    DrainRun,
    RunMode,
    RunStatus,
    StagedResult,
    Trigger,
)
from drains.progress import Progress, describe, format_duration
from drains.quota.backoff import backoff_in_force, record_backoff
from drains.runner import ALREADY_RUNNING, SKIPPED, DrainRunFailed, run_drain
from drains.runs import finish_run, start_run
from drains.staging import promote_leftovers, promote_staged, stage_result
from halacha.models import CourtDecision, Halacha
from tests import factories
from tests.support.db import admin_connect
from tests.support.extractors import USAGE, HookExtractor, first_sentence, read_call_log
from tests.support.items import count, state, statuses

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def call_log(tmp_path, monkeypatch):
    path = tmp_path / "calls.log"
    monkeypatch.setenv("TEST_EXTRACTOR_CALL_LOG", str(path))
    return path


@pytest.fixture
def use_extractor(settings):
    def use(name: str) -> None:
        settings.HALACHA_EXTRACTOR = f"tests.support.extractors:{name}"

    use("CountingExtractor")
    return use


@pytest.fixture
def hook():
    """Set ``HookExtractor.hook``; the extractor is switched to HookExtractor by the caller."""

    def set_hook(function):
        HookExtractor.hook = function

    yield set_hook
    HookExtractor.hook = None


@pytest.fixture
def side_connection():
    """A second connection to the test database: sees only what the runtime committed."""
    conn = admin_connect(connection.settings_dict["NAME"])
    yield conn
    conn.close()


def make_decisions(n: int, *, start: int = 1, marked: frozenset[int] = frozenset()) -> list:
    return factories.make_decisions(
        n,
        start=start,
        text="We hold that rule {i} binds{mark}. Decision {i} states its rule.",
        marks=dict.fromkeys(marked, " FAIL"),
    )


def drain(**kwargs):
    kwargs.setdefault("trigger", Trigger.MANUAL)
    kwargs.setdefault("tty", False)
    return run_drain("halacha", **kwargs)


def called_pks(path) -> list[int]:
    return [pk for _, _, pk, _ in read_call_log(path)]


def halacha_payload(rule: str, quote: str) -> dict:
    return {
        "extractor": "staged",
        "model": "m",
        "halachot": [{"rule": rule, "quote": quote, "topics": ["contract"]}],
    }


# --- a run from start to finish ---------------------------------------------------------------


def test_drain__works_off_the_backlog_and_records_the_run(call_log, use_extractor):
    decisions = make_decisions(25)

    result = drain()

    assert (result.status, result.reason, result.done, result.failed) == (
        RunStatus.SUCCEEDED,
        "backlog_empty",
        25,
        0,
    )
    run = DrainRun.objects.get()
    assert run.pk == result.run_id
    assert (run.status, run.stop_reason, run.mode, run.trigger) == (
        "succeeded",
        "backlog_empty",
        "normal",
        "manual",
    )
    assert (run.items_done, run.items_failed, run.chunks, run.backlog_at_start) == (25, 0, 3, 25)
    assert run.pid == os.getpid() and run.host
    assert run.backend_pid and run.backend_pid != connection.connection.info.backend_pid
    assert run.last_checkpoint_at and run.finished_at and run.finished_at >= run.started_at
    assert run.input_tokens == 25 * USAGE["input_tokens"]
    assert run.output_tokens == 25 * USAGE["output_tokens"]
    assert run.cache_creation_input_tokens == 25 * USAGE["cache_creation_input_tokens"]
    assert run.cache_read_input_tokens == 25 * USAGE["cache_read_input_tokens"]
    assert run.cost_usd == Decimal("0.0375")
    assert sorted(called_pks(call_log)) == [d.pk for d in decisions]
    assert set(statuses()) == {"done"}
    assert not StagedResult.objects.exists()
    halachot = list(Halacha.objects.select_related("decision"))
    assert len(halachot) == 25
    for halacha in halachot:
        assert halacha.ordinal == 1
        assert halacha.quote == first_sentence(halacha.decision.text)
        assert (halacha.extractor, halacha.model) == ("test", "test-model-1")


def test_drain__checkpoint_is_committed_after_each_chunk(
    settings, call_log, use_extractor, hook, side_connection
):
    settings.DRAINS_CHUNK_SIZE = 4
    use_extractor("HookExtractor")
    make_decisions(10)
    seen = []

    def look(decision):
        seen.append(
            side_connection.execute(
                "SELECT items_done, chunks, last_checkpoint_at IS NOT NULL FROM drains_drainrun"
            ).fetchone()
        )

    hook(look)
    drain()
    # Seen from outside at calls 1..10: nothing until the 4th item is in, then every 4 items.
    assert seen == [(0, 0, False)] * 4 + [(4, 1, True)] * 4 + [(8, 2, True)] * 2
    assert DrainRun.objects.get().chunks == 3


def test_drain__slow_items_checkpoint_at_least_every_minute(
    settings, call_log, use_extractor, hook
):
    settings.DRAINS_CHUNK_SIZE = 10
    use_extractor("HookExtractor")
    make_decisions(3)
    with freeze_time("2026-12-01T10:00:00Z") as frozen:
        hook(lambda decision: frozen.tick(timedelta(seconds=61)))  # a 61-second call
        drain()
    run = DrainRun.objects.get()
    assert (run.items_done, run.chunks) == (3, 3)


def test_drain__each_response_is_staged_and_committed_before_promotion(
    call_log, use_extractor, side_connection
):
    """A promotion that fails for real (a trigger refuses the insert) leaves the paid response
    committed in staging; the next run promotes it without calling the extractor again."""
    decisions = make_decisions(6)
    refused = decisions[3].pk
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            CREATE FUNCTION refuse_halacha() RETURNS trigger AS $$
            BEGIN
                IF NEW.decision_id = {refused} THEN
                    RAISE EXCEPTION 'halacha insert refused for decision %', NEW.decision_id;
                END IF;
                RETURN NEW;
            END $$ LANGUAGE plpgsql;
            CREATE TRIGGER refuse_halacha BEFORE INSERT ON halacha_halacha
                FOR EACH ROW EXECUTE FUNCTION refuse_halacha();
            """
        )
    try:
        with pytest.raises(DrainRunFailed, match="halacha insert refused"):
            drain()
        run = DrainRun.objects.get()
        assert (run.status, run.stop_reason) == ("failed", "error")
        assert "halacha insert refused" in run.error
        staged = side_connection.execute(
            "SELECT item_key, payload, promote_attempts, promote_error FROM drains_stagedresult"
        ).fetchall()
        assert len(staged) == 1
        item_key, payload, attempts, error = staged[0]
        assert item_key == str(refused) and attempts == 1 and "refused" in error
        assert payload["halachot"][0]["quote"] == first_sentence(decisions[3].text)
        assert first_sentence(decisions[3].text) in payload["raw"]["reply"]  # that call's reply
        assert state("halacha", refused)[0] == "pending"
        assert run.items_done == 3  # the three before it, checkpointed on the way out
    finally:
        with connection.cursor() as cursor:
            cursor.execute(
                "DROP TRIGGER refuse_halacha ON halacha_halacha; DROP FUNCTION refuse_halacha();"
            )

    second = drain()

    assert second.status == "succeeded" and second.done == 2
    assert called_pks(call_log).count(refused) == 1  # paid once, promoted on the second run
    assert CourtDecision.objects.get(pk=refused).halachot.count() == 1
    assert not StagedResult.objects.exists()
    assert DrainEvent.objects.filter(kind="leftovers_promoted", data__promoted=1).exists()


def test_drain__leftover_staged_rows_are_promoted_before_any_new_call(
    call_log, use_extractor, hook
):
    use_extractor("HookExtractor")
    decisions = make_decisions(4)
    left = decisions[0]
    stage_result(
        drain="halacha",
        item_key=str(left.pk),
        payload=halacha_payload("Staged rule.", first_sentence(left.text)),
    )
    states_at_calls = []
    hook(lambda d: states_at_calls.append(state("halacha", left)[0]))

    result = drain()

    assert states_at_calls and set(states_at_calls) == {"done"}
    assert left.pk not in called_pks(call_log)
    assert list(left.halachot.values_list("rule", "extractor")) == [("Staged rule.", "staged")]
    assert result.done == 3
    event = DrainEvent.objects.get(kind="leftovers_promoted")
    assert event.data == {"promoted": 1, "already_done": 0}


def test_drain__a_result_for_a_text_that_changed_during_its_call_is_never_promoted_onto_the_new(
    call_log, use_extractor, hook
):
    from halacha.importer import import_record, validate_record

    use_extractor("HookExtractor")
    record = {"external_id": "moving", "text": "We hold that notice is written. First text."}
    import_record(validate_record(record))
    decision = CourtDecision.objects.get(external_id="moving")
    changed = []

    def change_the_text(item):
        if not changed:  # the importer brings a new text while the model reads the old one
            changed.append(import_record(validate_record(
                dict(record, text="We hold that notice may be oral. Second text."))))

    hook(change_the_text)
    drain()
    assert changed == ["updated"]
    # The old text's result was not written onto the new text: the decision is pending again.
    assert state("halacha", decision)[0] == "pending" and not decision.halachot.exists()
    hook(None)
    drain()
    decision.refresh_from_db()
    assert state("halacha", decision)[0] == "done"
    assert [h.quote for h in decision.halachot.all()] == ["We hold that notice may be oral."]
    assert called_pks(call_log).count(decision.pk) == 2  # once per version of its text


def test_drain__unpromotable_leftover_is_kept_noted_and_never_paid_again(call_log, use_extractor):
    decisions = make_decisions(3)
    broken = decisions[1]
    stage_result(drain="halacha", item_key=str(broken.pk), payload={"halachot": [{"quote": "x"}]})

    result = drain()

    assert result.status == "succeeded" and result.done == 2
    assert broken.pk not in called_pks(call_log)
    row = StagedResult.objects.get()
    assert row.item_key == str(broken.pk) and row.promote_attempts == 1
    assert "KeyError" in row.promote_error
    note = DrainEvent.objects.get(kind="note")
    assert f"item {broken.pk} cannot be promoted" in note.message
    assert state("halacha", broken)[0] == "pending"

    drain()  # tried again, still failing: counted on the row, noted once
    assert StagedResult.objects.get().promote_attempts == 2
    assert DrainEvent.objects.filter(kind="note").count() == 1


# --- promotion services -----------------------------------------------------------------------


def test_promote_staged__is_idempotent(use_extractor):
    (decision,) = make_decisions(1)
    payload = halacha_payload("R.", first_sentence(decision.text))
    assert stage_result(drain="halacha", item_key=str(decision.pk), payload=payload)

    assert promote_staged(drain="halacha", item_key=str(decision.pk)) is True
    assert promote_staged(drain="halacha", item_key=str(decision.pk)) is False
    assert promote_staged(drain="halacha", item_key=str(decision.pk), payload=payload) is False
    # A second paid result for a decision already done adds nothing and is cleared.
    assert stage_result(drain="halacha", item_key=str(decision.pk), payload=payload)
    assert promote_staged(drain="halacha", item_key=str(decision.pk)) is False
    assert decision.halachot.count() == 1
    assert not StagedResult.objects.exists()


def test_stage_result__keeps_the_first_paid_result_for_an_item():
    assert stage_result(drain="halacha", item_key="7", payload={"n": 1}) is True
    assert stage_result(drain="halacha", item_key="7", payload={"n": 2}) is False
    assert StagedResult.objects.get().payload == {"n": 1}


def test_promote_leftovers__needs_no_extractor(settings):
    settings.HALACHA_EXTRACTOR = "tests.support.extractors:UnconstructibleExtractor"
    decisions = make_decisions(3)
    for decision in decisions:
        stage_result(
            drain="halacha",
            item_key=str(decision.pk),
            payload=halacha_payload("R.", first_sentence(decision.text)),
        )

    report = promote_leftovers(drain_name="halacha")

    assert (report.promoted, report.already_done, report.failed) == (3, 0, [])
    assert Halacha.objects.count() == 3


def test_promote_leftovers__imports_no_extractor_backend():
    from tests.support.db import child_env, manage

    code = (
        "import sys; from drains.staging import promote_leftovers; r = promote_leftovers(drain_name='halacha'); "
        "print(r.promoted, sorted(m for m in sys.modules if m.startswith(("
        "'halacha.extractors.offline', 'halacha.extractors.anthropic_api', "
        "'halacha.extractors.claude_cli', 'tests.support.extractors', 'anthropic'))))"
    )
    (decision,) = make_decisions(1)
    stage_result(
        drain="halacha",
        item_key=str(decision.pk),
        payload=halacha_payload("R.", first_sentence(decision.text)),
    )
    env = child_env(HALACHA_EXTRACTOR="tests.support.extractors:UnconstructibleExtractor")
    result = manage("shell", "--no-imports", "-c", code, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "1 []"


# --- item failures ----------------------------------------------------------------------------


def test_item_failure__counts_attempts_then_fails_and_the_run_goes_on(
    settings, call_log, use_extractor, monkeypatch
):
    settings.DRAINS_MAX_ATTEMPTS = 3
    monkeypatch.setenv("TEST_EXTRACTOR_FAIL_MARK", "FAIL")
    decisions = make_decisions(5, marked=frozenset({2, 4}))
    failing = [d.pk for d in decisions if "FAIL" in d.text]

    first = drain()

    assert (first.status, first.done, first.failed) == ("succeeded", 3, 2)
    run = DrainRun.objects.get(pk=first.run_id)
    assert (run.items_done, run.items_failed) == (3, 2)
    assert run.input_tokens == 5 * USAGE["input_tokens"]  # the failed calls were paid too
    for pk in failing:
        status, attempts, last_error = state("halacha", pk)
        assert (status, attempts) == ("pending", 1)
        assert "is not JSON" in last_error
    raw = DrainEvent.objects.filter(kind="item_failed", run_id=first.run_id)
    assert raw.count() == 2 and "I cannot help with that." in raw.first().data["raw"]

    # Runs in which every item failed are failed runs (and the command exits non-zero).
    for _ in range(2):
        with pytest.raises(DrainRunFailed, match="0 done, 2 failed"):
            drain()
    third = DrainRun.objects.latest("pk")
    assert (third.status, third.items_done, third.items_failed) == ("failed", 0, 2)
    for pk in failing:
        assert state("halacha", pk)[:2] == ("failed", 3)
    calls_before = len(read_call_log(call_log))
    fourth = drain()
    assert (fourth.done, fourth.failed) == (0, 0)
    assert len(read_call_log(call_log)) == calls_before == 5 + 2 + 2


# --- stop conditions --------------------------------------------------------------------------


def test_normal_mode__stops_at_max_items(call_log, use_extractor):
    make_decisions(30)
    result = drain(max_items=12)
    assert (result.status, result.reason, result.done) == ("succeeded", "max_items", 12)
    assert len(read_call_log(call_log)) == 12
    assert count("halacha", status="pending") == 18


def test_normal_mode__default_cap_from_settings(settings, call_log, use_extractor):
    settings.DRAINS_DEFAULT_MAX_ITEMS = 7
    make_decisions(9)
    result = drain()
    assert (result.reason, result.done) == ("max_items", 7)


def test_normal_mode__a_backlog_exactly_the_cap_is_backlog_empty(call_log, use_extractor):
    make_decisions(5)
    result = drain(max_items=5)
    assert (result.reason, result.done) == ("backlog_empty", 5)


def test_normal_mode__stops_at_max_minutes(call_log, use_extractor, monkeypatch):
    use_extractor("SleepingExtractor")
    monkeypatch.setenv("TEST_EXTRACTOR_SLEEP", "0.05")
    make_decisions(40)
    result = drain(max_minutes=0.25 / 60)
    assert (result.status, result.reason) == ("succeeded", "max_minutes")
    assert 1 <= result.done <= 5  # no item starts after 0.25 s; each takes at least 0.05 s
    assert len(read_call_log(call_log)) == result.done


def test_burst_mode__runs_past_the_normal_cap_and_records_the_deadline(
    settings, call_log, use_extractor
):
    settings.DRAINS_DEFAULT_MAX_ITEMS = 5
    make_decisions(12)
    state = set_drain_burst(name="halacha", until=DEFAULT_DEADLINE, actor="ops")
    result = drain()
    run = DrainRun.objects.get(pk=result.run_id)
    assert (result.reason, result.done) == ("backlog_empty", 12)
    assert (run.mode, run.deadline) == (RunMode.BURST, state.burst_until)


def test_burst_mode__no_call_starts_after_the_deadline(call_log, use_extractor, hook):
    use_extractor("HookExtractor")
    make_decisions(10)
    with freeze_time("2026-12-01T10:00:00Z") as frozen:
        state = set_drain_burst(name="halacha", until="2026-12-01T12:30:00+02:00", actor="ops")

        def clock_forward(decision):
            frozen.tick(timedelta(minutes=10))  # the 3rd call ends exactly at the deadline

        hook(clock_forward)
        result = drain()
    assert (result.status, result.reason, result.done) == ("stopped", "deadline", 3)
    stamps = [stamp for stamp, *_ in read_call_log(call_log)]
    assert len(stamps) == 3 and max(stamps) < state.burst_until.timestamp()


def test_burst_mode__deadline_between_two_calls_stops_before_the_next_call(
    settings, call_log, use_extractor, hook
):
    """Calls of 20 s and a chunk far larger than the run: no checkpoint (every 60 s) comes
    between the deadline and the next call, so only the loop's own deadline check can stop it."""
    settings.DRAINS_CHUNK_SIZE = 100
    use_extractor("HookExtractor")
    make_decisions(10)
    with freeze_time("2026-12-01T10:00:00Z") as frozen:
        state = set_drain_burst(name="halacha", until="2026-12-01T10:00:30+00:00", actor="ops")
        hook(lambda decision: frozen.tick(timedelta(seconds=20)))
        result = drain()
    # Call 1 ends at +20 s, call 2 at +40 s: past the deadline (+30 s), before any checkpoint.
    assert (result.status, result.reason, result.done) == ("stopped", "deadline", 2)
    stamps = [stamp for stamp, *_ in read_call_log(call_log)]
    assert len(stamps) == 2 and max(stamps) < state.burst_until.timestamp()


def test_concurrency__no_queued_item_is_called_after_the_deadline(
    call_log, use_extractor, hook
):
    """Two workers and four items in flight: the deadline passes while the first two are being
    called, so the two queued behind them must be skipped by the worker, not called."""
    use_extractor("HookExtractor")
    first, *_ = make_decisions(8)
    with freeze_time("2026-12-01T10:00:00Z") as frozen:
        state = set_drain_burst(name="halacha", until="2026-12-01T10:00:10+00:00", actor="ops")

        def past_the_deadline_once_both_calls_started(decision):
            if decision.pk != first.pk:
                return
            for _ in range(2000):  # both workers are calling (each logs when its call starts)
                if len(read_call_log(call_log)) >= 2:
                    break
                threading.Event().wait(0.005)
            frozen.tick(timedelta(seconds=20))

        hook(past_the_deadline_once_both_calls_started)
        result = drain(concurrency=2)
    assert (result.status, result.reason) == ("stopped", "deadline")
    stamps = [stamp for stamp, *_ in read_call_log(call_log)]
    assert len(stamps) == result.done == 2
    assert max(stamps) < state.burst_until.timestamp()
    assert count("halacha", status="done") == 2


def test_burst_mode__turned_off_mid_run_stops_at_the_next_checkpoint(
    settings, call_log, use_extractor, hook
):
    settings.DRAINS_CHUNK_SIZE = 5
    use_extractor("HookExtractor")
    make_decisions(20)
    set_drain_burst(name="halacha", until=DEFAULT_DEADLINE, actor="ops")
    hook(lambda d: len(read_call_log(call_log)) == 3 and set_drain_burst(name="halacha", until=None, actor="ops"))
    result = drain()
    assert (result.status, result.reason, result.done) == ("stopped", "burst_off", 5)


def test_drain__disabled_mid_run_stops_at_the_next_checkpoint(
    settings, call_log, use_extractor, hook
):
    settings.DRAINS_CHUNK_SIZE = 5
    use_extractor("HookExtractor")
    make_decisions(20)

    def disable(decision):
        if len(read_call_log(call_log)) == 2:
            DrainControl.objects.filter(name="halacha").update(enabled=False)

    hook(disable)
    result = drain()
    assert (result.status, result.reason, result.done) == ("stopped", "disabled", 5)


def test_drain__disabled_exits_at_once_without_calling_and_says_so_once(call_log, use_extractor):
    make_decisions(3)
    DrainControl.objects.create(name="halacha", enabled=False)
    first, second = drain(), drain()
    assert first.status == second.status == SKIPPED and first.reason == "disabled"
    assert read_call_log(call_log) == []
    assert not DrainRun.objects.exists()
    events = DrainEvent.objects.filter(kind="skipped")
    assert events.count() == 1 and "disabled" in events.get().message

    # Enabled, ran, disabled again: a new episode is noted again.
    DrainControl.objects.filter(name="halacha").update(enabled=True)
    assert drain().status == "succeeded"
    DrainControl.objects.filter(name="halacha").update(enabled=False)
    drain()
    assert events.count() == 2


def test_drain__backoff_of_another_drain_on_the_same_quota_stops_it_before_any_call(
    call_log, use_extractor
):
    make_decisions(3)
    DrainControl.objects.create(name="metadata", quota_key="test-quota")
    reset = timezone.now() + timedelta(hours=2)
    record_backoff(drain="metadata", quota_key="test-quota", reset_at=reset, reason="429")

    result = drain()

    assert (result.status, result.reason) == (SKIPPED, "backoff")
    assert "observed by metadata" in result.message
    assert read_call_log(call_log) == []
    assert DrainControl.objects.get(name="halacha").quota_key == "test-quota"
    assert backoff_in_force(drain="halacha").until == reset  # through the stored quota key
    assert backoff_in_force(drain="halacha", quota_key="other-quota") is None


def test_drain__another_drains_rate_limit_mid_run_stops_it(settings, call_log, use_extractor, hook):
    settings.DRAINS_CHUNK_SIZE = 4
    use_extractor("HookExtractor")
    make_decisions(12)
    DrainControl.objects.create(name="metadata", quota_key="test-quota")

    def limit_elsewhere(decision):
        if len(read_call_log(call_log)) == 2:
            record_backoff(
                drain="metadata",
                quota_key="test-quota",
                reset_at=timezone.now() + timedelta(hours=1),
                reason="429",
            )

    hook(limit_elsewhere)
    result = drain()
    assert (result.status, result.reason, result.done) == ("stopped", "backoff", 4)


def test_rate_limit__backs_off_every_drain_on_the_quota_and_ends_the_run(
    call_log, use_extractor, monkeypatch
):
    use_extractor("RateLimitingExtractor")
    monkeypatch.setenv("TEST_EXTRACTOR_RATE_LIMIT_AFTER", "3")
    monkeypatch.setenv("TEST_EXTRACTOR_LIMIT_MESSAGE", "You've hit your limit · resets 4pm (UTC)")
    make_decisions(8)
    DrainControl.objects.create(name="metadata", quota_key="test-quota")

    with freeze_time("2026-12-01T10:00:00Z"):
        result = drain()

    assert (result.status, result.reason, result.done) == ("rate_limited", "rate_limited", 3)
    run = DrainRun.objects.get(pk=result.run_id)
    assert run.status == "rate_limited" and "resets 4pm" in run.error
    reset = datetime(2026, 12, 1, 16, 0, tzinfo=UTC)
    for control in DrainControl.objects.all():
        assert control.backoff_until == reset
        assert "resets 4pm" in control.backoff_reason
        assert control.backoff_from_run_id == run.pk
    assert set(DrainEvent.objects.filter(kind="backoff").values_list("drain", flat=True)) == {
        "halacha",
        "metadata",
    }
    assert [outcome for *_, outcome in read_call_log(call_log)] == ["ok"] * 3 + ["limited"]


def test_rate_limit__the_kind_of_limit_is_stored_with_the_backoff_and_its_events(
    call_log, use_extractor, monkeypatch
):
    use_extractor("RateLimitingExtractor")
    monkeypatch.setenv("TEST_EXTRACTOR_LIMIT_MESSAGE", "Opus weekly limit reached ∙ resets Dec 3, 5pm")
    make_decisions(2)
    DrainControl.objects.create(name="metadata", quota_key="test-quota")
    with freeze_time("2026-12-01T10:00:00Z"):
        result = drain()
    assert result.status == "rate_limited"
    for control in DrainControl.objects.all():  # the whole quota backs off, knowing which limit
        assert (control.backoff_kind, control.backoff_model) == ("weekly_model", "opus")
    for event in DrainEvent.objects.filter(kind="backoff"):
        assert (event.data["kind"], event.data["model"]) == ("weekly_model", "opus")
        assert event.message.startswith("weekly limit of opus: rate limited until")
    # clearing the backoff clears its kind
    from drains.quota.backoff import clear_backoff

    control = DrainControl.objects.get(name="halacha")
    assert clear_backoff(drain="halacha", until=control.backoff_until, actor="test")
    control.refresh_from_db()
    assert (control.backoff_until, control.backoff_kind, control.backoff_model) == (None, "", "")


def test_signal__finishes_the_current_item_checkpoints_and_stops(call_log, use_extractor, hook):
    use_extractor("HookExtractor")
    make_decisions(8)
    before = signal.getsignal(signal.SIGTERM)
    hook(lambda d: len(read_call_log(call_log)) == 3 and os.kill(os.getpid(), signal.SIGTERM))

    result = drain()

    assert (result.status, result.reason, result.done) == ("stopped", "signal", 3)
    run = DrainRun.objects.get()
    assert run.items_done == 3 and run.status == "stopped"
    assert count("halacha", status="done") == 3
    assert not StagedResult.objects.exists()
    assert signal.getsignal(signal.SIGTERM) is before


def test_unexpected_error__run_failed_with_the_error_then_raised(call_log, use_extractor):
    use_extractor("RaisingExtractor")
    make_decisions(3)
    with pytest.raises(DrainRunFailed, match="backend exploded"):
        drain()
    run = DrainRun.objects.get()
    assert (run.status, run.stop_reason) == ("failed", "error")
    # One line for every surface; the traceback apart, for the run's page.
    assert run.error == "RuntimeError: backend exploded" and run.error_kind == "internal"
    assert run.error_traceback.startswith("Traceback (most recent call last):")
    assert run.error_traceback.rstrip().endswith("RuntimeError: backend exploded")
    assert len(read_call_log(call_log)) == 1  # stops at the first unexpected error


def test_every_item_failed__the_run_is_failed_with_the_last_items_error(
    settings, use_extractor, monkeypatch
):
    monkeypatch.setenv("TEST_EXTRACTOR_FAIL_MARK", "FAIL")
    make_decisions(2, marked=frozenset({1, 2}))
    with pytest.raises(DrainRunFailed, match="every item failed"):
        drain()
    run = DrainRun.objects.get()
    assert (run.status, run.items_done, run.items_failed) == ("failed", 0, 2)
    assert run.error_kind == "extractor"
    assert run.error.startswith("every item failed (2 items); the last, ")
    assert "is not JSON" in run.error and "\n" not in run.error


def test_a_bad_extractor_setting__one_classified_line_not_a_traceback(settings):
    settings.HALACHA_EXTRACTOR = "bogus"
    make_decisions(1)
    with pytest.raises(DrainRunFailed):
        drain()
    run = DrainRun.objects.get()
    assert run.error_kind == "configuration"
    assert run.error.startswith("ImproperlyConfigured: HALACHA_EXTRACTOR='bogus' is not a known")
    assert "Traceback" in run.error_traceback and "Traceback" not in run.error


def test_unexpected_error__before_the_run_started_is_recorded_too(use_extractor):
    use_extractor("UnconstructibleExtractor")
    make_decisions(1)
    with pytest.raises(DrainRunFailed):
        drain()
    run = DrainRun.objects.get()
    assert run.status == "failed" and "UnconstructibleExtractor was constructed" in run.error
    assert run.finished_at is not None


def test_drain_command__failure_is_a_command_error(use_extractor):
    use_extractor("RaisingExtractor")
    make_decisions(1)
    with pytest.raises(CommandError, match="failed"):
        call_command("drain_halacha", "--trigger", "manual", stdout=io.StringIO())
    assert DrainRun.objects.get().trigger == "manual"


def test_drain__runs_left_running_by_a_dead_process_are_marked_crashed(use_extractor):
    dead = start_run(drain="halacha", trigger=Trigger.CRON)
    DrainRun.objects.filter(pk=dead.pk).update(pid=999999)
    drain()
    dead.refresh_from_db()
    assert (dead.status, dead.stop_reason) == ("crashed", "dead")
    assert DrainEvent.objects.filter(kind="run_crashed", run=dead).exists()


def test_drain__stops_when_the_supervisor_marked_it_hung(settings, call_log, use_extractor, hook):
    settings.DRAINS_CHUNK_SIZE = 3
    use_extractor("HookExtractor")
    make_decisions(10)

    def mark_hung(decision):
        if len(read_call_log(call_log)) == 2:
            finish_run(run=DrainRun.objects.get(), status=RunStatus.HUNG, error="no checkpoint")

    hook(mark_hung)
    result = drain()
    # Fenced at once, not at the end of its chunk: the call in flight when it was marked (the
    # 2nd) is staged but not promoted, and no call starts after it.
    assert result.status == "hung" and result.done == 1
    assert DrainRun.objects.get().error == "no checkpoint"
    assert len(read_call_log(call_log)) == 2
    assert StagedResult.objects.count() == 1


def test_drain__a_lost_lock_fails_the_run(settings, call_log, use_extractor, hook):
    settings.DRAINS_CHUNK_SIZE = 3
    use_extractor("HookExtractor")
    make_decisions(10)

    def terminate_lock_session(decision):
        if len(read_call_log(call_log)) == 1:
            pid = DrainRun.objects.get().backend_pid
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_terminate_backend(%s)", [pid])

    hook(terminate_lock_session)
    with pytest.raises(DrainRunFailed, match="lost"):
        drain()
    run = DrainRun.objects.get()
    # The lock went during the 1st call: its result is staged but not promoted by this run
    # (fenced: the lock check before the promotion), and no further call is made.
    assert (run.status, run.stop_reason, run.items_done) == ("failed", "lock_lost", 0)
    assert len(read_call_log(call_log)) == 1
    assert StagedResult.objects.count() == 1
    # The next run promotes it without paying again; the journal's replay counts it on run 1.
    hook(None)
    assert drain().done == 9
    assert len(read_call_log(call_log)) == 10
    run.refresh_from_db()
    assert run.items_done == 1


# --- concurrency ------------------------------------------------------------------------------


def test_concurrency__calls_in_parallel_each_staged_and_promoted_once(
    call_log, use_extractor, monkeypatch, side_connection
):
    use_extractor("SleepingExtractor")
    monkeypatch.setenv("TEST_EXTRACTOR_SLEEP", "0.1")
    decisions = make_decisions(24)
    sessions = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
    sessions_before = side_connection.execute(sessions).fetchone()[0]

    result = drain(concurrency=4)

    assert (result.status, result.done) == ("succeeded", 24)
    assert sorted(called_pks(call_log)) == [d.pk for d in decisions]
    assert Halacha.objects.count() == 24 and not StagedResult.objects.exists()
    # Calls overlapped: each lasts at least 0.1 s from its logged start, so this many were in
    # flight at once (however slow a busy machine makes the rest).
    starts = sorted(stamp for stamp, *_ in read_call_log(call_log))
    assert max(sum(1 for other in starts if s <= other < s + 0.1) for s in starts) >= 3
    assert not [t for t in threading.enumerate() if t.name.startswith("drain-halacha-")]
    # Each worker closed its connection (a backend leaves pg_stat_activity just after).
    for _ in range(200):
        if side_connection.execute(sessions).fetchone()[0] == sessions_before:
            break
        time.sleep(0.01)
    assert side_connection.execute(sessions).fetchone()[0] == sessions_before


def test_concurrency__a_rate_limit_stops_every_worker(call_log, use_extractor, monkeypatch):
    use_extractor("RateLimitingExtractor")
    monkeypatch.setenv("TEST_EXTRACTOR_RATE_LIMIT_AFTER", "6")
    make_decisions(40)
    result = drain(concurrency=4)
    assert result.status == "rate_limited"
    assert result.done == 6
    assert count("halacha", status="done") == 6
    assert Halacha.objects.count() == 6 and not StagedResult.objects.exists()


# --- locks ------------------------------------------------------------------------------------


def test_drain_lock__one_holder_and_holders_in_one_query(django_assert_num_queries):
    first, second = DrainLock("halacha"), DrainLock("halacha")
    assert first.acquire()
    try:
        assert not second.acquire()
        with django_assert_num_queries(1):
            holders = drain_lock_holders(["halacha", "metadata"])
        assert holders == {"halacha": first.backend_pid, "metadata": None}
        assert first.holder().backend_pid == first.backend_pid
        assert "drain-halacha" in first.holder().application_name
    finally:
        first.release()
    assert drain_lock_holders(["halacha"]) == {"halacha": None}
    assert second.acquire()
    second.release()


def test_drain__a_second_runner_returns_already_running_without_working(call_log, use_extractor):
    make_decisions(3)
    lock = DrainLock("halacha")
    assert lock.acquire()
    try:
        result = drain()
    finally:
        lock.release()
    assert result.status == ALREADY_RUNNING and "already running" in result.message
    assert str(lock.backend_pid) in result.message
    assert read_call_log(call_log) == [] and not DrainRun.objects.exists()


def test_finish_run__is_guarded_and_idempotent():
    run = start_run(drain="halacha")
    assert finish_run(run=run, status=RunStatus.HUNG, error="stuck")
    assert not finish_run(run=run, status=RunStatus.SUCCEEDED)
    run.refresh_from_db()
    assert (run.status, run.error) == ("hung", "stuck")
    with pytest.raises(ValueError):
        finish_run(run=run, status=RunStatus.RUNNING)


# --- progress and memory ----------------------------------------------------------------------


def test_progress__one_log_line_per_chunk_when_not_on_a_terminal(
    settings, caplog, call_log, use_extractor
):
    settings.DRAINS_CHUNK_SIZE = 10
    make_decisions(25)
    with caplog.at_level(logging.INFO, logger="drains.progress"):
        drain(trigger=Trigger.CRON)
    lines = [r.getMessage() for r in caplog.records if r.name == "drains.progress"]
    assert len(lines) == 2
    assert lines[0].startswith("halacha chunk 1: 10/25 done")
    assert lines[1].startswith("halacha chunk 2: 20/25 done") and "ETA" in lines[1]


def test_progress__a_bar_on_a_terminal(call_log, use_extractor):
    make_decisions(12)
    set_drain_burst(name="halacha", until=DEFAULT_DEADLINE, actor="ops")
    stream = io.StringIO()
    drain(progress_stream=stream, tty=True)
    text = stream.getvalue()
    assert text.startswith("\rhalacha [") and text.endswith("\n")
    last = text.rstrip("\n").split("\r")[-1]
    assert "[" + "#" * 24 + "]" in last and "12/12 done" in last
    assert "ETA" in last and "deadline in" in last


def test_progress__text():
    assert format_duration(3.25) == "3.2s"
    assert format_duration(75) == "1m15s"
    assert format_duration(2 * 3600 + 7 * 60) == "2h07m"
    assert format_duration(None) == "?"
    now = timezone.now()
    text = describe(
        done=30, failed=2, total=100, elapsed=16.0, deadline=now + timedelta(hours=3), now=now
    )
    assert text == "30/100 done 2 failed 2.0/s ETA 34s deadline in 3h00m"
    assert "failed" not in describe(done=1, failed=0, total=None, elapsed=60)
    assert Progress(drain="x", total=1, stream=io.StringIO()).tty is False


def test_progress__a_manual_run_in_a_log_shows_its_start_first_item_and_slow_items(caplog):
    now = [0.0]
    progress = Progress(drain="halacha", total=4, stream=io.StringIO(), tty=False, manual=True,
                        clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="drains.progress"):
        for at, done in ((0, None), (1, 1), (2, 2), (9, 3), (10, 4)):
            now[0] = float(at)
            if done is None:
                progress.start(run_id=7, backlog=6)
            else:
                # t=1: the first item; t=2: quick, no line; t=9: slow; t=10: quick
                progress.item(done=done, failed=0)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "halacha run 7 started: 4 to do, 6 pending"
    assert lines[1].startswith("halacha: 1/4 done") and lines[2].startswith("halacha: 3/4 done")
    assert len(lines) == 3


def test_progress__a_cron_run_in_a_log_stays_quiet_between_chunks(caplog):
    progress = Progress(drain="halacha", total=4, stream=io.StringIO(), tty=False)
    with caplog.at_level(logging.INFO, logger="drains.progress"):
        progress.start(run_id=7, backlog=6)
        progress.item(done=1, failed=0)
    assert caplog.records == []


def test_drain_command__last_line_gives_halachot_found_and_backlog_left(use_extractor):
    make_decisions(5)
    out = io.StringIO()
    call_command("drain_halacha", "--max-items", "3", stdout=out, stderr=io.StringIO())
    line = out.getvalue().strip().splitlines()[-1]
    found = Halacha.objects.count()
    assert line.endswith(f"; {found} halachot found, 2 left in the backlog"), line
    run = DrainRun.objects.get()
    assert run.trigger == "manual"
    # The extractor it ran with, for the projection (only runs of the configured one count).
    assert run.extractor == "tests.support.extractors:CountingExtractor"


def test_debug_query_log_does_not_grow_during_the_run(settings, call_log, use_extractor):
    """With DEBUG on, Django logs every query: the runtime empties that log after each item, so
    its length during the run stays at what one item (and one checkpoint) costs, however many
    items a chunk or the backlog holds."""
    settings.DEBUG = True
    settings.DRAINS_CHUNK_SIZE = 30
    make_decisions(60)
    reset_queries()  # what setting up the backlog logged is not the run's
    longest = 0

    def watch(execute, sql, params, many, context):
        nonlocal longest
        longest = max(longest, len(connection.queries))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(watch):
        drain(max_items=60)
    assert count("halacha", status="done") == 60
    # Measured: 27 (the run's start-up, then one item at a time); 171 with the per-item reset
    # removed, when only the checkpoint empties the log (30 items a chunk).
    assert 0 < longest < 40


# --- the command shell ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("app", "command", "words"),
    [
        ("halacha", "drain_halacha", ["--trigger", "--max-items", "--concurrency", "Cron"]),
        ("drains", "burst", ["--until", "--actor", "never by cron"]),
    ],
)
def test_command_help(app, command, words):
    parser = load_command_class(app, command).create_parser("manage.py", command)
    text = parser.format_help()
    for word in words:
        assert word in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--concurrency", "0"], "must be at least 1"),
        # the run row's concurrency is a smallint: refused at the door, not a failed run
        (["--concurrency", "100000"], "--concurrency: '100000' must be at most 64"),
        (["--max-items", "many"], "is not a whole number"),
        (["--max-minutes", "-1"], "must be at least 0.01"),
        (["--max-minutes", "inf"], "is not a number"),
        (["--trigger", "someone"], "invalid choice"),
    ],
)
def test_drain_command__bad_arguments(args, message):
    with pytest.raises(CommandError, match=message) as refused:
        call_command("drain_halacha", *args)
    assert refused.value.returncode == 2
    assert not DrainRun.objects.exists()


def test_stage_result__refuses_to_run_inside_another_transaction():
    from django.db import transaction

    with pytest.raises(RuntimeError, match="must commit on its own"), transaction.atomic():
        stage_result(drain="halacha", item_key="1", payload={})
    assert not StagedResult.objects.exists()
