"""The drain runtime with real processes: SIGKILL crashes, two runners, a deadline, a rate
limit and SIGTERM, each against ``manage.py drain_halacha`` children on the test database.

The children's extractor is a test extractor (tests/support/extractors.py) that writes one line
per call, when the call starts, to a call log: that log is how calls are counted and timed.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone
from freezegun import freeze_time

from drains.bursts import set_drain_burst
from drains.models import DrainControl, DrainRun, StagedResult
from drains.runner import run_drain
from halacha.models import CourtDecision, Halacha
from tests import factories
from tests.support.db import popen_manage, with_settings
from tests.support.extractors import read_call_log
from tests.support.items import count, statuses

pytestmark = pytest.mark.django_db(transaction=True)


def make_decisions(n: int) -> list[CourtDecision]:
    return factories.make_decisions(
        n, prefix="p", text="Decision {i} holds. We hold that rule {i} binds.{mark}"
    )


env_for = factories.extractor_env


def drain_child(env: dict, *args: str) -> subprocess.Popen:
    return popen_manage("drain_halacha", "--trigger", "manual", *args, env=env)


def wait_for_calls(path, count: int, process: subprocess.Popen, timeout: float = 60) -> bool:
    """Poll until the call log has ``count`` lines; False if the process ended first."""
    limit = time.monotonic() + timeout
    while time.monotonic() < limit:
        if len(read_call_log(path)) >= count:
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.01)
    raise AssertionError(f"no {count} calls within {timeout} s")


@pytest.mark.slow
def test_sigkill_at_random_moments__every_decision_promoted_exactly_once(call_log):
    """200 decisions; killed with SIGKILL at 10 random moments while it works, restarted each
    time. At most one call per kill is paid twice (the one in flight), nothing is lost."""
    decisions = make_decisions(200)
    env = env_for(call_log, "SleepingExtractor", TEST_EXTRACTOR_SLEEP="0.02")
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    kills = 0
    while kills < 10:
        before = len(read_call_log(call_log))
        child = drain_child(env, "--max-items", "1000")
        if wait_for_calls(call_log, before + 1, child):
            time.sleep(rng.uniform(0, 0.15))  # the moment: anywhere in call/stage/promote
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
            kills += 1
        child.communicate(timeout=60)
        assert bool(count("halacha", status="pending")), f"seed {seed}: too fast"

    final = drain_child(env, "--max-items", "1000")
    out, err = final.communicate(timeout=120)
    assert final.returncode == 0, err

    calls = read_call_log(call_log)
    called = [pk for _, _, pk, _ in calls]
    assert set(statuses()) == {"done"}
    per_decision = {d.pk: d.halachot.count() for d in decisions}
    assert set(per_decision.values()) == {1}, f"seed {seed}"
    assert Halacha.objects.count() == 200
    assert not StagedResult.objects.exists()
    assert set(called) == {d.pk for d in decisions}
    assert len(calls) <= 200 + kills, f"seed {seed}: {len(calls)} calls"
    runs = list(DrainRun.objects.order_by("pk").values_list("status", flat=True))
    assert runs[-1] == "succeeded" and runs.count("crashed") >= kills - 1, runs


def test_two_runners_started_together__one_works_the_other_exits_0_at_once(call_log):
    make_decisions(30)
    env = env_for(call_log, "SleepingExtractor", TEST_EXTRACTOR_SLEEP="0.05")
    children = [drain_child(env), drain_child(env)]
    ended: dict[int, float] = {}
    while len(ended) < 2:
        for index, child in enumerate(children):
            if index not in ended and child.poll() is not None:
                ended[index] = time.monotonic()
        time.sleep(0.01)
    outputs = [child.communicate() for child in children]

    assert [child.returncode for child in children] == [0, 0]
    losers = [i for i, (out, err) in enumerate(outputs) if "already running" in out + err]
    assert len(losers) == 1, outputs
    loser, winner = losers[0], 1 - losers[0]
    assert ended[loser] < ended[winner] - 0.5  # gone while the winner still had work to do
    assert DrainRun.objects.count() == 1
    assert {pid for _, pid, _, _ in read_call_log(call_log)} == {children[winner].pid}
    assert count("halacha", status="done") == 30


def test_burst_deadline_mid_run__stopped_and_no_call_started_after_it(call_log):
    """The burst starts with a far deadline; once the child is calling, the operator moves the
    deadline to 1.5 s from now. The run reads it at its next checkpoint (one item per chunk
    here), calls until it, and stops there."""
    make_decisions(200)
    env = with_settings(env_for(call_log, "SleepingExtractor", TEST_EXTRACTOR_SLEEP="0.2"),
                        DRAINS_CHUNK_SIZE=1)
    first = set_drain_burst(name="halacha", until=timezone.now() + timedelta(minutes=10), actor="test")
    child = drain_child(env)
    assert wait_for_calls(call_log, 2, child)
    moved_at = time.time()
    deadline = set_drain_burst(name="halacha", until=timezone.now() + timedelta(seconds=1.5), actor="test")
    deadline = deadline.burst_until.timestamp()

    out, err = child.communicate(timeout=60)

    assert child.returncode == 0, err
    run = DrainRun.objects.get()
    assert (run.status, run.stop_reason, run.mode) == ("stopped", "deadline", "burst")
    assert run.deadline == first.burst_until  # as it was at the start
    stamps = [stamp for stamp, *_ in read_call_log(call_log)]
    # 10 ms is the gap between the runtime's deadline check and the extractor's first line.
    assert max(stamps) <= deadline + 0.01
    assert any(moved_at < stamp for stamp in stamps)  # it kept calling up to the new deadline
    assert run.items_done == len(stamps) < 200


def test_rate_limit_mid_run__backoff_until_the_parsed_reset_then_works_again(
    call_log, settings, monkeypatch
):
    make_decisions(20)
    reset_epoch = int(time.time()) + 3600
    reset_at = datetime.fromtimestamp(reset_epoch, UTC)
    message = f"Claude AI usage limit reached|{reset_epoch}"
    limited_env = env_for(
        call_log,
        "RateLimitingExtractor",
        TEST_EXTRACTOR_RATE_LIMIT_AFTER="5",
        TEST_EXTRACTOR_LIMIT_MESSAGE=message,
    )

    first = drain_child(limited_env)
    out, err = first.communicate(timeout=60)

    assert first.returncode == 0, err
    run = DrainRun.objects.get()
    assert (run.status, run.items_done) == ("rate_limited", 5)
    control = DrainControl.objects.get(name="halacha")
    assert control.backoff_until == reset_at
    assert control.backoff_reason == message and control.backoff_from_run_id == run.pk
    assert control.quota_key == "test-quota"
    assert len(read_call_log(call_log)) == 6  # 5 answered, the 6th was the limit

    # Before the reset: a run (whose extractor would answer) makes no call at all.
    second = drain_child(env_for(call_log, "CountingExtractor"))
    out, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    assert "backs off until" in out + err
    assert len(read_call_log(call_log)) == 6
    assert DrainRun.objects.count() == 1

    # After the reset (a frozen clock past it): it works again.
    monkeypatch.setenv("TEST_EXTRACTOR_CALL_LOG", str(call_log))
    settings.HALACHA_EXTRACTOR = "tests.support.extractors:CountingExtractor"
    with freeze_time(reset_at + timedelta(minutes=1)):
        result = run_drain("halacha", trigger="manual", tty=False)
    assert (result.status, result.done) == ("succeeded", 15)
    assert len(read_call_log(call_log)) == 6 + 15


def test_sigterm__finishes_the_current_item_checkpoints_and_exits_0(call_log):
    make_decisions(20)
    env = env_for(call_log, "SleepingExtractor", TEST_EXTRACTOR_SLEEP="0.3")
    child = drain_child(env)
    assert wait_for_calls(call_log, 2, child)
    child.send_signal(signal.SIGTERM)
    out, err = child.communicate(timeout=60)

    assert child.returncode == 0, err
    assert "SIGTERM received" in err
    run = DrainRun.objects.get()
    assert (run.status, run.stop_reason) == ("stopped", "signal")
    calls = len(read_call_log(call_log))
    assert calls == run.items_done == count("halacha", status="done")
    assert 2 <= calls < 20
    assert run.last_checkpoint_at is not None
    assert not StagedResult.objects.exists()


def test_failing_child__records_the_error_and_exits_non_zero(call_log):
    make_decisions(2)
    child = drain_child(env_for(call_log, "RaisingExtractor"))
    out, err = child.communicate(timeout=60)
    assert child.returncode == 1
    assert "backend exploded" in err and "Traceback" not in err
    run = DrainRun.objects.get()
    assert run.status == "failed" and "backend exploded" in run.error


@pytest.mark.slow
@pytest.mark.parametrize("corrector", ["supervisor", "next run"])
@pytest.mark.parametrize("journal", ["journal", "no journal"])
def test_kill_9_before_the_first_checkpoint__the_dead_runs_row_is_corrected_from_what_it_did(
    call_log, settings, corrector, journal
):
    """A run killed with SIGKILL before any checkpoint leaves a row saying 0 done, 0 failed.
    The supervisor (or the next run) corrects it from what the run did: its journal (its paid
    results and its failed calls) and the decisions' own state (what was finished while it ran:
    without a journal, the only record). Usage follows the row."""
    from drains.locks import drain_lock_holders
    from drains.models import DrainEvent
    from drains.selectors.usage import usage_by_week
    from drains.supervisor import supervise

    factories.make_decisions(30, prefix="p", text="Decision {i} holds. We hold that rule {i} binds.{mark}",
                             marks={2: " FAIL-ME", 4: " FAIL-ME"})
    extra = {"TEST_EXTRACTOR_FAIL_MARK": "FAIL-ME", "TEST_EXTRACTOR_SLEEP": "0.2"}
    tuned: dict[str, object] = {"DRAINS_CHUNK_SIZE": 1000}
    if journal == "no journal":
        tuned["DRAINS_JOURNAL_UNSAFE_OFF"] = True
        settings.DRAINS_JOURNAL_UNSAFE_OFF = True
    env = with_settings(env_for(call_log, "SleepingExtractor", **extra), **tuned)
    child = drain_child(env, "--max-items", "1000")
    assert wait_for_calls(call_log, 9, child)  # 8 calls came back (2 failed), the 9th in flight
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=60)
    limit = time.monotonic() + 10
    while drain_lock_holders(["halacha"])["halacha"] is not None:  # the server sees it gone
        assert time.monotonic() < limit, "the killed run's lock session outlived it"
        time.sleep(0.05)
    dead = DrainRun.objects.get()
    assert (dead.status, dead.items_done, dead.items_failed) == ("running", 0, 0)

    if corrector == "supervisor":
        supervise(names=["halacha"], write=lambda line: None)
    else:  # the next run settles what the dead one left, then (no item allowed) ends
        run_drain("halacha", trigger="manual", max_items=0, tty=False)

    dead.refresh_from_db()
    done = count("halacha", status="done")
    failed = count("halacha", attempts__gt=0, status__in=["pending", "failed"])
    assert done >= 6 and failed == 2
    # Without a journal the failed calls have no record but the decisions' (not the run's).
    counted_failed = failed if journal == "journal" else 0
    assert (dead.status, dead.items_done, dead.items_failed) == ("crashed", done, counted_failed)
    event = DrainEvent.objects.get(kind="run_corrected")
    assert event.run_id == dead.pk
    assert (event.data["done"], event.data["failed"]) == ([0, done], [0, counted_failed])
    assert f"0 → {done} done" in event.message
    (week,) = [u for u in usage_by_week(weeks=1) if u.current]
    assert week.calls == done + counted_failed  # usage counts calls from the rows
