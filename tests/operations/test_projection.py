from __future__ import annotations

from datetime import timedelta

import pytest

from drains.clock import span
from operations.projection import backlog_history, project
from tests.operations.conftest import BOUNDARY, WEDNESDAY

# Wed 10:00 -> Sat 18:00 is 80 h.


def test_done_before_the_deadline():
    p = project(pending=100, rate_per_hour=2, now=WEDNESDAY, deadline=BOUNDARY, deadline_kind="burst")
    assert p.finish_at == WEDNESDAY + timedelta(hours=50)  # Fri 12:00
    assert p.on_time is True
    assert p.text == "done by Fri 12:00 IST, 30 h before the burst deadline"


def test_not_done_by_the_deadline_gives_the_share():
    p = project(pending=1000, rate_per_hour=7.875, now=WEDNESDAY, deadline=BOUNDARY,
                deadline_kind="week")
    assert p.on_time is False
    assert p.fraction_by_deadline == pytest.approx(0.63)
    assert p.text.startswith("about 63% by the weekly reset (Sat 18:00 IST); all done by ")


def test_no_progress_in_the_last_hour():
    p = project(pending=5, rate_per_hour=0, now=WEDNESDAY, deadline=BOUNDARY, deadline_kind="week")
    assert p.finish_at is None
    assert p.text == "nothing done in the last 1 h, so no projection: 5 pending, the weekly reset is Sat 18:00 IST"


def test_empty_backlog():
    p = project(pending=0, rate_per_hour=0, now=WEDNESDAY, deadline=BOUNDARY, deadline_kind="week")
    assert p.text == "backlog empty" and p.on_time is True


def test_deadline_already_passed_is_zero_percent():
    p = project(pending=10, rate_per_hour=1, now=BOUNDARY + timedelta(minutes=1), deadline=BOUNDARY,
                deadline_kind="burst")
    assert p.fraction_by_deadline == 0.0


@pytest.mark.parametrize(
    ("minutes", "text"),
    [(0, "0 s"), (7 / 60, "7 s"), (1.5, "2 min"), (40, "40 min"), (60, "1 h"), (28 * 60 + 10, "28 h"), (80 * 60, "3 d 8 h"),
     (96 * 60, "4 d")],
)
def test_span(minutes, text):
    assert span(timedelta(minutes=minutes)) == text


def test_backlog_history_adds_back_what_was_done():
    points = backlog_history(pending=10, done_per_bucket=[1, 2, 3], now=WEDNESDAY)
    assert [v for _, v in points] == [16, 15, 13, 10]
    assert points[0][0] == WEDNESDAY - timedelta(hours=3)
    assert points[-1][0] == WEDNESDAY


