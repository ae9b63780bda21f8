from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import timedelta

import pytest

from operations.projection import backlog_history, burndown_svg, project, span
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


def test_burndown_svg_is_valid_self_contained_svg_with_deadline_and_projection():
    history = backlog_history(pending=100, done_per_bucket=[10] * 12, now=WEDNESDAY)
    p = project(pending=100, rate_per_hour=10, now=WEDNESDAY, deadline=BOUNDARY, deadline_kind="burst")
    svg = burndown_svg(history=history, projection=p, now=WEDNESDAY, title="halacha <backlog>")
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    assert root.tag == f"{ns}svg"
    assert root.find(f"{ns}title").text == "halacha <backlog>"
    classes = {el.get("class") for el in root.iter() if el.get("class")}
    assert classes == {"history", "deadline", "projection"}
    assert len(root.find(f"{ns}polyline").get("points").split()) == 13
    assert "http" not in svg.replace('xmlns="http://www.w3.org/2000/svg"', "")  # nothing loaded
    assert "<script" not in svg


def test_burndown_svg_without_progress_has_no_projection_line():
    history = backlog_history(pending=5, done_per_bucket=[0] * 12, now=WEDNESDAY)
    p = project(pending=5, rate_per_hour=0, now=WEDNESDAY, deadline=BOUNDARY, deadline_kind="week")
    svg = burndown_svg(history=history, projection=p, now=WEDNESDAY, title="t")
    assert 'class="projection"' not in svg and 'class="deadline"' in svg
