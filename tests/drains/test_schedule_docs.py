"""docs/operations.md documents the schedule: its table must be CRONJOBS, job for job."""

from __future__ import annotations

import re

from django.conf import settings

from drains import schedule
from tests.support.db import ROOT

DOC = ROOT / "docs" / "operations.md"


def documented_rows(text: str) -> list[list[str]]:
    block = re.search(r"<!-- schedule-table.*?-->\n(.*?)<!-- /schedule-table -->", text, re.S)
    assert block, "docs/operations.md lost its schedule-table markers"
    rows = [line for line in block[1].splitlines() if line.startswith("|")]
    assert rows[0].split("|")[1:3] == [" job ", " expression "]
    return [[cell.strip().strip("`") for cell in row.strip("|").split("|")] for row in rows[2:]]


def describe(expression: str) -> str:
    """The 'fires' column, derived from the expression the same way the check expands it."""
    week = schedule.week_minutes(expression)
    minutes = sorted({m % 60 for m in week})
    hours = sorted({(m // 60) % 24 for m in week})
    if len(hours) == 24 and len(minutes) == 1:
        return f"every hour at :{minutes[0]:02d}"
    if len(hours) == 24:
        return ", ".join(f":{m:02d}" for m in minutes)
    assert len(hours) == 1 and len(minutes) == 1 and len(week) == 7, expression
    return f"daily at {hours[0]:02d}:{minutes[0]:02d}"


def test_documented_schedule_is_cronjobs():
    rows = documented_rows(DOC.read_text())
    documented = [(row[0], row[1], row[2]) for row in rows]
    actual = [
        (job.name, job.expression, describe(job.expression)) for job in schedule.scheduled_jobs()
    ]
    assert documented == actual
    assert len(actual) == len(settings.CRONJOBS)


def test_the_comparison_notices_a_changed_expression():
    text = DOC.read_text().replace("| `17 * * * *` |", "| `19 * * * *` |")
    rows = documented_rows(text)
    assert ("fetch_decisions", "19 * * * *") in [(r[0], r[1]) for r in rows]
    assert [(r[0], r[1]) for r in rows] != [
        (j.name, j.expression) for j in schedule.scheduled_jobs()
    ]
