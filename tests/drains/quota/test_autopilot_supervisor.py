"""The autopilot in the supervisor's tick (``manage.py supervise_drains`` in-process): it starts
the burst when its rule says so and step 6 starts the drain in the same tick, a real detached
``manage.py drain_halacha`` with a test extractor; not due, nothing starts; zero quota spent by
the tick itself."""

from __future__ import annotations

import io
import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from drains.models import DrainControl, DrainEvent, DrainRun, EventKind, RunStatus
from drains.quota.controls import set_quota_policy
from drains.quota.signals import QuotaSignal, WindowReading
from drains.quota.store import record_signal
from tests import factories
from tests.support.db import database_url

pytestmark = pytest.mark.django_db(transaction=True)

KEY = "cli:acct"


@pytest.fixture
def world(monkeypatch, settings, tmp_path):
    monkeypatch.setenv("DATABASE_URL", database_url())
    monkeypatch.setenv("HALACHA_EXTRACTOR", "tests.support.extractors:InstantExtractor")
    settings.DRAINS_LOG_DIR = tmp_path / "log"
    settings.DRAINS_QUOTA_DEFAULT_SPEND_RATE = 0.01
    settings.DRAINS_QUOTA_WEEKLY_RESERVE = 0.10
    settings.DRAINS_QUOTA_RESERVE_RELEASE_HOURS = 0
    DrainControl.objects.create(name="halacha", quota_key=KEY)
    factories.make_decisions(3, prefix="a")
    set_quota_policy(quota_key=KEY, actor="op", autopilot="on")


def week_reading(utilization: float, resets_in: timedelta) -> None:
    now = timezone.now()
    signal = QuotaSignal(windows=(WindowReading("seven_day", utilization, now + resets_in),),
                         source="api")
    record_signal(quota_key=KEY, drain="halacha", run_id=None, signal=signal, now=now)


def tick() -> str:
    out = io.StringIO()
    call_command("supervise_drains", stdout=out)
    return out.getvalue()


def wait_runs_end(timeout: float = 60) -> list[DrainRun]:
    limit = time.monotonic() + timeout
    while time.monotonic() < limit:
        runs = list(DrainRun.objects.filter(trigger="supervisor"))
        if runs and all(run.status != RunStatus.RUNNING for run in runs):
            return runs
        time.sleep(0.05)
    raise AssertionError("the started drain did not finish in time")


def test_due__the_tick_starts_the_autopilot_burst_and_the_drain(world):
    # Room 30 % at 1 %/h x 1.25 + 15 min = 37 h 45 min; the reset is 30 h away: due.
    week_reading(0.60, timedelta(hours=30))
    out = tick()
    assert "autopilot  halacha: autopilot: week at 60%, room 30%" in out, out
    assert "halacha  start  burst active until" in out, out
    control = DrainControl.objects.get(name="halacha")
    assert control.burst_by == "autopilot"
    [run] = wait_runs_end()
    assert run.status == RunStatus.SUCCEEDED and run.items_done == 3
    assert DrainEvent.objects.filter(kind=EventKind.BURST_ON, actor="autopilot").count() == 1


def test_not_due__nothing_starts(world):
    week_reading(0.60, timedelta(hours=40))  # more than the 37 h 45 min the room takes
    out = tick()
    assert "autopilot  quota cli:acct: autopilot waiting:" in out, out
    assert DrainControl.objects.get(name="halacha").burst_until is None
    assert not DrainRun.objects.filter(drain="halacha").exists()


def test_between_chunks__a_normal_run_starts_the_autopilots_burst_and_goes_on_as_it(
    world, settings, monkeypatch
):
    from drains.bursts import get_drain_burst
    from drains.models import RunMode

    monkeypatch.setenv("TEST_EXTRACTOR_QUOTA_KEY", KEY)
    settings.HALACHA_EXTRACTOR = "tests.support.extractors:InstantExtractor"
    settings.DRAINS_DEFAULT_MAX_ITEMS = 3  # a normal run alone would stop after 3
    settings.DRAINS_CHUNK_SIZE = 2
    factories.make_decisions(5, prefix="b")  # 8 in all
    week_reading(0.60, timedelta(hours=30))  # due (see above)
    out = io.StringIO()
    call_command("drain_halacha", "--trigger", "cron", stdout=out, stderr=io.StringIO())
    [run] = DrainRun.objects.filter(drain="halacha")
    burst = get_drain_burst("halacha")
    assert burst.active and DrainControl.objects.get(name="halacha").burst_by == "autopilot"
    assert run.mode == RunMode.BURST and run.deadline == burst.burst_until
    assert run.items_done == 8, out.getvalue()  # past the normal run's cap: the burst's run
