"""The burn-down chart: labelled axes, a "now" marker, the deadline and the weekly reset, and a
window scaled so the history is not squeezed into a sliver when the deadline is days away."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import timedelta

import pytest

from operations.chart import burndown_svg, nice_top
from operations.projection import backlog_history, project
from tests.operations.conftest import BOUNDARY, WEDNESDAY

NS = "{http://www.w3.org/2000/svg}"


def _svg(**kwargs):
    svg = burndown_svg(**kwargs)
    return svg, ET.fromstring(svg)


def _by_class(root, css):
    return [el for el in root.iter() if el.get("class") == css]


def test_axes_are_labelled_with_round_ticks():
    history = backlog_history(pending=130, done_per_bucket=[5] * 24, now=WEDNESDAY)
    p = project(pending=130, rate_per_hour=5, now=WEDNESDAY, deadline=BOUNDARY, deadline_kind="week")
    _, root = _svg(history=history, projection=p, now=WEDNESDAY, week_reset=BOUNDARY, title="t")
    # The backlog peaked at 130 + 24 x 5 = 250 a day ago: the axis tops at the next round 500.
    assert [el.text for el in _by_class(root, "y-tick")] == ["0", "250", "500"]
    assert _by_class(root, "y-title")[0].text == "items"
    assert _by_class(root, "x-title")[0].text == "time (Asia/Jerusalem)"
    assert [el.text for el in _by_class(root, "x-tick")][0] == "1 Dec 10:00"  # 24 h before now


def test_now_marker_and_history_fill_a_fair_share_of_the_width():
    # The deadline is 80 h away and the history 24 h long; 100 items at 10/h finish in 10 h. The
    # window ends 24 h after now (as far ahead as the history reaches back), so "now" sits in
    # the middle instead of the left tenth.
    history = backlog_history(pending=100, done_per_bucket=[10] * 24, now=WEDNESDAY)
    p = project(pending=100, rate_per_hour=10, now=WEDNESDAY, deadline=BOUNDARY, deadline_kind="week")
    _, root = _svg(history=history, projection=p, now=WEDNESDAY, week_reset=BOUNDARY, title="t",
                   width=360)
    now_x = float(_by_class(root, "now")[0].get("x1"))
    assert _by_class(root, "now-label")[0].text == "now"
    assert 40 + 320 * 0.45 < now_x < 40 + 320 * 0.55
    xs = [float(pt.split(",")[0]) for pt in _by_class(root, "history")[0].get("points").split()]
    assert xs[0] == 40 and xs[-1] == now_x
    # The deadline is beyond the window: named at the edge, not drawn at a squeezed scale.
    assert not _by_class(root, "deadline")
    assert _by_class(root, "deadline-beyond")[0].text == "weekly reset (deadline) Sat 18:00 →"


def test_a_burst_shows_its_deadline_and_the_weekly_reset():
    history = backlog_history(pending=40, done_per_bucket=[2] * 6, now=WEDNESDAY)
    burst_end = WEDNESDAY + timedelta(hours=3)
    p = project(pending=40, rate_per_hour=2, now=WEDNESDAY, deadline=burst_end, deadline_kind="burst")
    svg, root = _svg(history=history, projection=p, now=WEDNESDAY, week_reset=BOUNDARY, title="t")
    deadline = _by_class(root, "deadline")[0]
    assert _by_class(root, "deadline-label")[0].text == "burst deadline"
    assert float(deadline.get("x1")) == 40 + 308  # the window ends at the burst deadline
    assert _by_class(root, "reset-beyond")[0].text == "weekly reset Sat 18:00 →"
    projection = _by_class(root, "projection")[0]
    assert float(projection.get("points").split()[-1].split(",")[0]) == float(deadline.get("x1"))
    assert "<script" not in svg and "href" not in svg


def test_the_projection_is_flat_until_a_backoff_ends():
    history = backlog_history(pending=20, done_per_bucket=[10] * 6, now=WEDNESDAY)
    resume = WEDNESDAY + timedelta(hours=2)
    p = project(pending=20, rate_per_hour=10, now=resume, deadline=BOUNDARY, deadline_kind="week")
    _, root = _svg(history=history, projection=p, now=WEDNESDAY, week_reset=BOUNDARY, title="t")
    points = [tuple(map(float, pt.split(","))) for pt in
              _by_class(root, "projection")[0].get("points").split()]
    (x0, y0), (x1, y1), (x2, y2) = points
    assert y0 == y1 and x1 > x0  # flat while backing off
    assert y2 > y1 and x2 > x1  # then down to zero (SVG y grows downwards)
    assert x2 - x1 == pytest.approx(x1 - x0, abs=0.2)  # 2 h of backoff, then 2 h of work at 10/h


def test_the_page_chart_endpoint_uses_it(operator, frozen, client):
    client.force_login(operator)
    response = client.get("/operations/burndown/halacha.svg")
    assert response.status_code == 200
    root = ET.fromstring(response.content)
    assert _by_class(root, "now") and _by_class(root, "y-title")


def test_nice_top():
    assert [nice_top(v) for v in (0, 1, 3, 7, 10, 11, 130, 999, 1001)] == [
        1, 1, 5, 10, 10, 20, 200, 1000, 2000]
