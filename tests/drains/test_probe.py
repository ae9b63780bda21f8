"""A probe after a reset: once a backoff has expired, the next run makes exactly one call, alone,
whatever ``--concurrency`` says; it opens up only when that call went through, and a refused
probe writes the new backoff at once with no further call. One probe per quota, not per drain.

The process tests run ``manage.py drain_halacha`` / ``drain_metadata`` children with the test
extractors (tests/support/extractors.py), whose call log records each call's start and pid.
"""

from __future__ import annotations

import subprocess
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone
from freezegun import freeze_time

from drains.clock import format_local
from drains.models import DrainControl, DrainEvent, DrainRun, EventKind
from drains.quota import policy
from drains.quota.backoff import clear_backoff, record_backoff
from drains.selectors import probe_evidence
from tests import factories
from tests.support.db import popen_manage
from tests.support.extractors import read_call_log

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SLEEP = 0.5  # each answered call takes this long


# --- the rule ---------------------------------------------------------------------------------


def test_probe_due__only_after_the_reset_and_until_a_call_has_worked_since():
    reset = T0
    assert not policy.probe_due(backoff_until=None, last_success_at=None, now=T0)
    # still in force: no call at all, so no probe either
    assert not policy.probe_due(backoff_until=reset, last_success_at=None, now=reset - timedelta(1))
    assert policy.probe_due(backoff_until=reset, last_success_at=None, now=reset)
    # work before the reset (the calls in flight when the limit came) proves nothing
    earlier = reset - timedelta(minutes=30)
    assert policy.probe_due(backoff_until=reset, last_success_at=earlier, now=reset + timedelta(1))
    # a call that worked after the reset: the quota answers, no probe
    later = reset + timedelta(minutes=1)
    assert not policy.probe_due(backoff_until=reset, last_success_at=later, now=later)


@pytest.mark.django_db
def test_probe_evidence__outlives_the_cleared_backoff_and_sees_work_after_the_reset():
    DrainControl.objects.create(name="halacha", quota_key="q")
    DrainControl.objects.create(name="metadata", quota_key="q")
    DrainControl.objects.create(name="elsewhere", quota_key="other")
    reset = T0 + timedelta(hours=1)
    with freeze_time(T0):
        record_backoff(drain="metadata", quota_key="q", reset_at=reset, reason="limit")
    with freeze_time(reset + timedelta(minutes=5)):
        # the supervisor clears the expired backoff: the quota still owes a probe
        assert clear_backoff(drain="halacha", until=reset, actor="supervisor")
        assert clear_backoff(drain="metadata", until=reset, actor="supervisor")
        evidence = probe_evidence(drain="halacha", quota_key="q")
        assert (evidence.drains, evidence.backoff_until) == (["halacha", "metadata"], reset)
        assert evidence.last_success_at is None
        # another quota's drain is no evidence either way
        assert probe_evidence(drain="elsewhere", quota_key="other").backoff_until is None
        # a run on the quota that did work after the reset: no probe any more
        DrainRun.objects.create(
            drain="metadata", host="h", pid=1, started_at=reset, items_done=3,
            last_checkpoint_at=reset + timedelta(minutes=2), status="succeeded",
        )
        evidence = probe_evidence(drain="halacha", quota_key="q")
        assert evidence.last_success_at == reset + timedelta(minutes=2)
        assert not policy.probe_due(
            backoff_until=evidence.backoff_until,
            last_success_at=evidence.last_success_at,
            now=timezone.now(),
        )


# --- processes --------------------------------------------------------------------------------

def env_for(call_log, extractor: str, **extra: str) -> dict[str, str]:
    return factories.extractor_env(call_log, extractor, TEST_EXTRACTOR_SLEEP=str(SLEEP), **extra)


def child(command: str, env: dict, *args: str) -> subprocess.Popen:
    return popen_manage(command, "--trigger", "manual", *args, env=env)


def expired_backoff(*, drains: tuple[str, ...] = ("halacha",)) -> datetime:
    """A backoff observed an hour ago whose reset passed a minute ago, on the test quota."""
    now = timezone.now()
    for name in drains:
        DrainControl.objects.create(name=name, quota_key="test-quota")
    reset = now - timedelta(minutes=1)
    with freeze_time(now - timedelta(hours=1)):
        record_backoff(
            drain=drains[0], quota_key="test-quota", reset_at=reset, reason="usage limit"
        )
    return reset


def probe_events() -> list[DrainEvent]:
    return list(DrainEvent.objects.filter(kind=EventKind.PROBE).order_by("at", "id"))


def assert_first_call_alone(calls) -> None:
    """The second call started only after the first had taken its whole SLEEP."""
    starts = sorted(stamp for stamp, *_ in calls)
    assert starts[1] - starts[0] >= SLEEP, starts[:3]


@pytest.mark.django_db(transaction=True)
def test_concurrency_8_after_an_expired_backoff__one_call_alone_then_full_concurrency(call_log):
    factories.make_decisions(20, prefix="p")
    reset = expired_backoff()
    assert probe_evidence(drain="halacha", quota_key="test-quota").backoff_until == reset

    run = child("drain_halacha", env_for(call_log, "SleepingExtractor"), "--concurrency", "8")
    out, err = run.communicate(timeout=120)

    assert run.returncode == 0, err
    calls = read_call_log(call_log)
    assert len(calls) == 20
    assert_first_call_alone(calls)
    # ... then it opened up: the next calls overlap (8 workers, each call SLEEP long)
    starts = sorted(stamp for stamp, *_ in calls)
    assert sum(1 for s in starts[1:] if s < starts[1] + SLEEP) >= 2, starts
    (probe,) = probe_events()
    assert probe.data["outcome"] == "ok" and probe.drain == "halacha"
    assert probe.message.startswith("probe after reset: ok")
    assert DrainRun.objects.get().status == "succeeded"
    # the page's timeline shows it
    from operations.selectors import snapshot

    assert any(e["message"] == probe.message for e in snapshot()["timeline"])

    # The quota answered since its reset: the next run makes no probe.
    factories.make_decisions(8, prefix="q")
    again = child("drain_halacha", env_for(call_log, "SleepingExtractor"), "--concurrency", "8")
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    assert len(read_call_log(call_log)) == 28
    assert len(probe_events()) == 1


@pytest.mark.django_db(transaction=True)
def test_refused_probe__exactly_one_call_and_the_new_backoff_written(call_log):
    factories.make_decisions(20, prefix="p")
    expired_backoff()
    new_reset = int(time.time()) + 7200
    env = env_for(
        call_log,
        "RateLimitingExtractor",
        TEST_EXTRACTOR_RATE_LIMIT_AFTER="0",
        TEST_EXTRACTOR_LIMIT_MESSAGE=f"Claude AI usage limit reached|{new_reset}",
    )

    run = child("drain_halacha", env, "--concurrency", "8")
    out, err = run.communicate(timeout=120)

    assert run.returncode == 0, err
    assert [outcome for *_, outcome in read_call_log(call_log)] == ["limited"]
    control = DrainControl.objects.get(name="halacha")
    assert control.backoff_until == datetime.fromtimestamp(new_reset, UTC)
    drain_run = DrainRun.objects.get()
    assert (drain_run.status, drain_run.items_done) == ("rate_limited", 0)
    (probe,) = probe_events()
    assert probe.data["outcome"] == "refused" and probe.run_id == drain_run.pk
    assert probe.message == (
        f"probe refused: backing off until {format_local(datetime.fromtimestamp(new_reset, UTC))}"
    )


FIRST_SLEEP = 4.0  # the probe's call: long enough for the second drain to start during it


def wait_for_calls(path, count: int, process: subprocess.Popen, timeout: float = 60) -> None:
    limit = time.monotonic() + timeout
    while len(read_call_log(path)) < count:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < limit, f"no {count} calls within {timeout} s"
        time.sleep(0.01)


def probe_then_second_drain(call_log, extractor: str, **extra: str) -> list[subprocess.Popen]:
    """halacha starts and makes its probe (a slow first call); metadata, on the same quota,
    starts while that call is in flight."""
    env = env_for(call_log, extractor, TEST_EXTRACTOR_FIRST_SLEEP=str(FIRST_SLEEP), **extra)
    prober = child("drain_halacha", env, "--concurrency", "4")
    wait_for_calls(call_log, 1, prober)
    second = child("drain_metadata", env, "--concurrency", "4")
    for process in (prober, second):
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
    return [prober, second]


@pytest.mark.django_db(transaction=True)
def test_two_drains_on_one_quota__one_probe_the_other_holds_then_both_work(call_log):
    factories.make_decisions(6, prefix="p")
    expired_backoff(drains=("halacha", "metadata"))

    prober, second = probe_then_second_drain(call_log, "SleepingExtractor")

    calls = read_call_log(call_log)
    assert len(calls) == 12  # 6 decisions, each drained by both
    probe_start = min(stamp for stamp, *_ in calls)
    # metadata held while halacha's probe was in flight: its calls all start after it ended
    assert all(stamp >= probe_start + FIRST_SLEEP for stamp, pid, *_ in calls if pid == second.pid)
    assert_first_call_alone(calls)
    (probe,) = probe_events()
    assert (probe.drain, probe.data["outcome"]) == ("halacha", "ok")
    (wait,) = DrainEvent.objects.filter(kind=EventKind.PROBE_WAIT)
    assert wait.drain == "metadata" and "drain-halacha" in wait.message
    assert {run.status for run in DrainRun.objects.all()} == {"succeeded"}
    assert DrainRun.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_two_drains_on_one_quota__a_refused_probe_is_the_only_call(call_log):
    factories.make_decisions(6, prefix="p")
    expired_backoff(drains=("halacha", "metadata"))
    new_reset = int(time.time()) + 7200

    probe_then_second_drain(
        call_log,
        "RateLimitingExtractor",
        TEST_EXTRACTOR_RATE_LIMIT_AFTER="0",
        TEST_EXTRACTOR_LIMIT_MESSAGE=f"Claude AI usage limit reached|{new_reset}",
    )

    assert len(read_call_log(call_log)) == 1
    (probe,) = probe_events()
    assert (probe.drain, probe.data["outcome"]) == ("halacha", "refused")
    assert DrainEvent.objects.filter(kind=EventKind.PROBE_WAIT, drain="metadata").exists()
    until = datetime.fromtimestamp(new_reset, UTC)
    assert set(DrainControl.objects.values_list("backoff_until", flat=True)) == {until}
    # metadata held, then the new backoff skipped it: no run, no call
    assert list(DrainRun.objects.values_list("drain", flat=True)) == ["halacha"]
    skipped = DrainEvent.objects.get(kind=EventKind.SKIPPED, drain="metadata")
    assert "backs off until" in skipped.message
