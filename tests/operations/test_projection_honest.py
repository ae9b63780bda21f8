"""An honest projection: its rate comes only from runs of the extractor and model configured now;
with none it says "no measured rate yet"; outside a burst it waits for the next scheduled run;
the burn-down starts at the first decision."""

from __future__ import annotations

from datetime import timedelta

from django.test import Client
from django.utils import timezone

from drains.bursts import set_drain_burst
from operations import selectors

URL = "/api/operations/"


def _halacha(api):
    return next(s for s in api.get(URL).json()["services"] if s["name"] == "halacha")


def test_an_offline_runs_rate_is_never_used_for_a_cli_backend(api, frozen, decisions, make_run,
                                                             settings):
    decisions(pending=6)
    now = timezone.now()
    make_run(started_at=now - timedelta(minutes=10), finished_at=now - timedelta(minutes=9),
             items_done=500, extractor="offline")  # fast and offline
    assert _halacha(api)["projection"]["measured"] is True  # offline is configured: it counts
    settings.HALACHA_EXTRACTOR = "claude-cli"
    settings.HALACHA_CLI_MODEL = "sonnet"
    projection = _halacha(api)["projection"]
    assert projection["measured"] is False
    assert projection["rate_text"] == "no measured rate yet"
    assert projection["finish_at"] is None and projection["on_time"] is None
    assert projection["text"].startswith("no measured rate yet (no run of the configured extractor")
    # A run of the CLI backend with that model measures it.
    make_run(started_at=now - timedelta(hours=1), finished_at=now, items_done=2,
             extractor="claude-cli:sonnet")
    projection = _halacha(api)["projection"]
    assert (projection["measured"], projection["rate_per_hour"]) == (True, 2.0)
    assert projection["rate_text"] == "2.0 per hour, measured"


def test_no_runs__no_measured_rate_yet(api, frozen, decisions):
    decisions(pending=3)
    projection = _halacha(api)["projection"]
    assert projection["measured"] is False
    assert projection["text"] == ("no measured rate yet (no run of the configured extractor in "
                                  "the last 3 h): 3 pending, the weekly reset is Sat 18:00 IST")


def test_outside_a_burst_the_next_scheduled_run_is_accounted_for(api, frozen, decisions,
                                                                make_run, settings):
    # metadata fires hourly at :00; it is 10:00, so its next run is 11:00.
    decisions(pending=10)
    now = timezone.now()
    make_run(drain="metadata", started_at=now - timedelta(hours=1), finished_at=now,
             items_done=100)
    metadata = next(s for s in api.get(URL).json()["services"] if s["name"] == "metadata")
    # 10 items at 100/h take 6 min: from 11:00, not from now.
    assert metadata["next_fire_at"] == "2026-12-02T11:00:00+02:00"
    assert metadata["projection"]["finish_at"] == "2026-12-02T11:06:00+02:00"
    # In a burst the supervisor starts it at once: from now.
    set_drain_burst(name="metadata", until="2026-12-04T09:30:00+02:00", actor="olga")
    entry = selectors.service_entry("metadata")
    assert entry["projection"]["finish_at"] < now + timedelta(minutes=30)


def test_the_chart_starts_at_the_first_decision(operator, frozen, decisions):
    frozen.tick(-timedelta(hours=3))
    decisions(pending=4)  # arrived 3 h ago
    frozen.tick(timedelta(hours=3))
    chart = selectors.drain_chart("halacha")
    first = chart.history[0][0]
    assert timezone.now() - timedelta(hours=5) < first <= timezone.now() - timedelta(hours=3)
    assert len(chart.history) <= 5
    client = Client()
    client.force_login(operator)
    assert client.get("/operations/burndown/halacha.svg").status_code == 200
