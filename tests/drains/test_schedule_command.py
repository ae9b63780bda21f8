"""`manage.py schedule`: job, expression, next three fire times in Asia/Jerusalem, last run."""

from __future__ import annotations

import io
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from freezegun import freeze_time

from drains.models import DrainRun, RunMode, RunStatus

TLV = ZoneInfo("Asia/Jerusalem")
# The hours below are cron's on a host that runs in Israel time (tests of other hosts say so).
pytestmark = pytest.mark.usefixtures("cron_in_jerusalem")


def run_row(drain, started, status, error="", mode=RunMode.NORMAL):
    return DrainRun.objects.create(
        drain=drain,
        mode=mode,
        host="test",
        pid=1,
        started_at=started,
        finished_at=started + timedelta(minutes=1),
        status=status,
        error=error,
    )


def table(**kwargs) -> dict[str, str]:
    out = io.StringIO()
    call_command("schedule", stdout=out, **kwargs)
    lines = out.getvalue().splitlines()
    assert lines[0].split()[:2] == ["job", "expression"]
    assert "Asia/Jerusalem" in lines[0]
    return {line.split()[0]: line for line in lines[2:]}


@pytest.mark.django_db
@freeze_time("2026-03-02 08:03:00+00:00")  # Monday 10:03 in Jerusalem (UTC+2)
def test_schedule_prints_next_three_fires_in_jerusalem_and_the_last_run():
    now = datetime(2026, 3, 2, 8, 3, tzinfo=ZoneInfo("UTC"))
    # drains are looked up by drain name, other jobs by command name; the newest row wins
    run_row("halacha", now - timedelta(hours=3), RunStatus.FAILED, "old failure")
    run_row("halacha", now - timedelta(minutes=8), RunStatus.SUCCEEDED)
    run_row(
        "fetch_decisions",
        now - timedelta(minutes=46),
        RunStatus.FAILED,
        "HTTP 503 from the feed\ntraceback...",
        mode=RunMode.JOB,
    )
    rows = table()
    assert list(rows) == [
        "drain_metadata",
        "supervise_drains",
        "drain_halacha",
        "send_digest",
        "fetch_decisions",
    ]
    assert "Mon 2026-03-02 10:10 IST, Mon 2026-03-02 10:25 IST, Mon 2026-03-02 10:40 IST" in rows["drain_halacha"]
    assert "Mon 2026-03-02 10:05 IST, Mon 2026-03-02 10:20 IST, Mon 2026-03-02 10:35 IST" in rows["supervise_drains"]
    assert "Mon 2026-03-02 11:00 IST, Mon 2026-03-02 12:00 IST, Mon 2026-03-02 13:00 IST" in rows["drain_metadata"]
    assert "Tue 2026-03-03 07:12 IST, Wed 2026-03-04 07:12 IST, Thu 2026-03-05 07:12 IST" in rows["send_digest"]
    assert rows["drain_halacha"].rstrip().endswith("Mon 2026-03-02 09:55 IST  succeeded")
    assert (
        rows["fetch_decisions"]
        .rstrip()
        .endswith("Mon 2026-03-02 09:17 IST  failed: HTTP 503 from the feed")
    )
    assert rows["drain_metadata"].split()[-2:] == ["never", "-"]


@pytest.mark.django_db
@freeze_time("2026-03-27 06:00:00+00:00")  # Friday 09:00, the day Israel moves to summer time
def test_next_fires_follow_the_daylight_saving_change():
    rows = table(count=2)
    # 07:12 on Saturday and Sunday are both local wall-clock times, now UTC+3
    assert "Sat 2026-03-28 07:12 IDT, Sun 2026-03-29 07:12 IDT" in rows["send_digest"]


@pytest.mark.django_db
def test_count_below_one_is_a_user_error():
    with pytest.raises(CommandError, match="--count: 0 must be at least 1"):
        call_command("schedule", count=0)


def test_schedule_command_makes_a_constant_number_of_queries(django_assert_num_queries, db):
    for i in range(5):
        run_row("halacha", datetime(2026, 1, 1, i, tzinfo=TLV), RunStatus.SUCCEEDED)
        run_row("metadata", datetime(2026, 1, 1, i, tzinfo=TLV), RunStatus.SUCCEEDED)
    with django_assert_num_queries(1):
        call_command("schedule", stdout=io.StringIO())


@pytest.mark.django_db
@freeze_time("2026-03-02 08:03:00+00:00")
def test_expressions_read_in_drains_cron_tz_are_shown_in_jerusalem(settings):
    settings.DRAINS_CRON_TZ = "UTC"  # a host whose cron runs in UTC
    rows = table(count=1)
    assert "Tue 2026-03-03 09:12 IST" in rows["send_digest"]  # 07:12 UTC is 09:12 in Jerusalem
