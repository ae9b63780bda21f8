"""``manage.py drain NAME`` runs any registered drain, as its ``drain_<name>`` command does."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from drains.models import DrainRun
from tests.factories import make_decisions
from tests.support.items import count

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("name", ["halacha", "metadata"])
def test_drain_name_runs_that_drain_and_records_its_run(name, settings):
    settings.HALACHA_EXTRACTOR = "offline"
    make_decisions(3)
    out = io.StringIO()
    call_command("drain", name, "--max-items", "2", stdout=out, stderr=io.StringIO())
    run = DrainRun.objects.get()
    assert (run.drain, run.trigger, run.items_done) == (name, "manual", 2)
    assert count(name, status="done") == 2
    assert f"{name}: " in out.getvalue() and "2 done" in out.getvalue()


def test_an_unknown_drain_is_one_line_naming_the_known_ones():
    with pytest.raises(CommandError, match="halacha, metadata"):
        call_command("drain", "summary")
    assert not DrainRun.objects.exists()
