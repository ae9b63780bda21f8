"""A run records the concurrency it runs at (DrainRun.concurrency) and the time its workers spent
on items (DrainRun.busy_seconds): the projection's rate is items per busy second, scaled to the
concurrency (operations/projection.py). The real runtime on real PostgreSQL."""

from __future__ import annotations

import pytest

from drains.models import DrainRun, Trigger
from drains.runner import run_drain
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_run_records_its_concurrency(settings):
    concurrency = 3  # not the default of 1: a run that stored nothing would read as 1
    settings.HALACHA_EXTRACTOR = "tests.support.extractors:InstantExtractor"
    factories.make_decisions(4, text="Decision {i} states its rule. We hold that rule {i} binds.")
    result = run_drain("halacha", trigger=Trigger.MANUAL, concurrency=concurrency, tty=False)
    assert (result.status, result.done) == ("succeeded", 4)
    assert DrainRun.objects.get(pk=result.run_id).concurrency == concurrency


def test_a_run_records_the_time_its_workers_spent_on_items(settings, monkeypatch):
    # Each call sleeps 0.05 s: six items keep the workers busy for at least 0.3 s in all,
    # however the three workers share them (the projection's rate is per busy second).
    settings.HALACHA_EXTRACTOR = "tests.support.extractors:SleepingExtractor"
    monkeypatch.setenv("TEST_EXTRACTOR_SLEEP", "0.05")
    factories.make_decisions(6, text="Decision {i} states its rule. We hold that rule {i} binds.")
    result = run_drain("halacha", trigger=Trigger.MANUAL, concurrency=3, chunk_size=2, tty=False)
    assert (result.status, result.done) == ("succeeded", 6)
    assert DrainRun.objects.get(pk=result.run_id).busy_seconds >= 6 * 0.05
