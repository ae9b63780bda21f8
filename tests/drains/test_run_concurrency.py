"""A run records the concurrency it runs at (DrainRun.concurrency): the projection scales its
per-call-slot rate to it (operations/projection.py). The real runtime on real PostgreSQL."""

from __future__ import annotations

import pytest

from drains.models import DrainRun, Trigger
from drains.runner import run_drain
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("concurrency", [1, 3])
def test_a_run_records_its_concurrency(settings, concurrency):
    settings.HALACHA_EXTRACTOR = "tests.support.extractors:InstantExtractor"
    factories.make_decisions(4, text="Decision {i} states its rule. We hold that rule {i} binds.")
    result = run_drain("halacha", trigger=Trigger.MANUAL, concurrency=concurrency, tty=False)
    assert (result.status, result.done) == ("succeeded", 4)
    assert DrainRun.objects.get(pk=result.run_id).concurrency == concurrency
