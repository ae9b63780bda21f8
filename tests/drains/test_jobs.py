"""Once per cron slot: which slot a start serves, and the claim that lets one start do the work."""

from __future__ import annotations

import io
import socket
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from django.core import mail
from django.core.management import CommandError, call_command
from django.test import override_settings
from freezegun import freeze_time

from drains.jobs import current_slot, job_run
from drains.models import DrainRun, Trigger
from drains.runs import record_checkpoint

TZ = ZoneInfo("Asia/Jerusalem")
# The hours below are cron's on a host that runs in Israel time (tests of other hosts say so).
pytestmark = pytest.mark.usefixtures("cron_in_jerusalem")


def at(hh, mm, ss=0, day=3):
    return datetime(2026, 12, day, hh, mm, ss, tzinfo=TZ)


@pytest.mark.parametrize(
    ("name", "now", "slot"),
    [
        ("send_digest", at(7, 12, 5), at(7, 12)),
        ("send_digest", at(9, 40), at(7, 12)),  # a late start still serves the morning's slot
        ("send_digest", at(7, 11, 45), at(7, 12)),  # a clock 15 s ahead names the same slot
        ("send_digest", at(7, 11, 20), at(7, 12, day=2)),  # too early: yesterday's
        ("supervise_drains", at(10, 20, 3), at(10, 20)),
        ("supervise_drains", at(10, 34, 20), at(10, 20)),
        ("supervise_drains", at(10, 34, 45), at(10, 35)),  # within the tolerance of the next
        ("fetch_decisions", at(23, 17, 1), at(23, 17)),
    ],
)
def test_the_slot_is_the_jobs_latest_fire_time_from_the_schedule(name, now, slot):
    assert current_slot(name, now=now) == slot


def test_a_slot_passed_in_by_the_scheduler_wins():
    given = datetime.fromisoformat("2026-12-03T07:12:00+02:00")
    assert current_slot("send_digest", now=at(12, 0), scheduled_for=given) == at(7, 12)


@pytest.mark.django_db
def test_a_scheduled_for_given_as_text_to_call_command_claims_that_slot():
    call_command("send_digest", "--dry-run", trigger="cron",
                 scheduled_for="2026-12-03T07:12:00+02:00", stdout=io.StringIO())
    (run,) = DrainRun.objects.filter(drain="send_digest")
    assert run.slot == at(7, 12)


@pytest.mark.django_db
def test_a_malformed_scheduled_for_is_one_line_naming_the_option():
    with pytest.raises(CommandError, match=r"--scheduled-for.*'07:12' is not a date and time"):
        call_command("send_digest", "--dry-run", "--scheduled-for", "07:12")


def test_a_job_that_is_not_scheduled_has_no_slot():
    assert current_slot("not_in_cronjobs", now=at(7, 12)) is None


@pytest.mark.django_db
@override_settings(DIGEST_RECIPIENTS=["ops@example.com"])
def test_the_second_cron_start_of_a_slot_does_nothing_and_says_who_did_it():
    with freeze_time(at(7, 12, 4)):
        call_command("send_digest", trigger="cron", stdout=io.StringIO())
    first = DrainRun.objects.get(drain="send_digest")
    with freeze_time(at(7, 12, 9)):
        out = io.StringIO()
        call_command("send_digest", trigger="cron", stdout=out)
    assert out.getvalue().strip() == (
        f"send_digest: already done for the 07:12 slot by {socket.gethostname()} "
        f"(run {first.pk}); this copy exits."
    )
    assert len(mail.outbox) == 1
    assert DrainRun.objects.filter(drain="send_digest").count() == 1

    # a manual run is never refused; the next day's slot is free again
    with freeze_time(at(7, 30)):
        call_command("send_digest", trigger="manual", stdout=io.StringIO())
    with freeze_time(at(7, 12, 2, day=4)):
        call_command("send_digest", trigger="cron", stdout=io.StringIO())
    assert len(mail.outbox) == 3
    slots = list(DrainRun.objects.order_by("pk").values_list("trigger", "slot"))
    assert slots == [("cron", at(7, 12)), ("manual", None), ("cron", at(7, 12, day=4))]


@pytest.mark.django_db
def test_a_supervisor_tick_from_cron_acts_once_per_slot():
    with freeze_time(at(10, 20, 1)):
        call_command("supervise_drains", trigger="cron", stdout=io.StringIO())
        out = io.StringIO()
        call_command("supervise_drains", trigger="cron", stdout=out)
        call_command("supervise_drains", stdout=io.StringIO())  # by hand: manual, never refused
    assert "supervise_drains: already done for the 10:20 slot" in out.getvalue()
    runs = list(DrainRun.objects.filter(drain="supervise_drains").values_list("trigger", flat=True))
    assert sorted(runs) == ["cron", "manual"]


# --- job runs (a job's run row) ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_job_run__records_success():
    with job_run(name="fetch_decisions", trigger=Trigger.CRON) as run:
        record_checkpoint(run=run, done=4)
    run.refresh_from_db()
    assert (run.drain, run.mode, run.status, run.items_done) == (
        "fetch_decisions",
        "job",
        "succeeded",
        4,
    )
    assert run.finished_at is not None


@pytest.mark.django_db
def test_job_run__records_the_failure_before_reraising():
    with pytest.raises(ValueError, match="feed down"), job_run(name="fetch_decisions") as run:
        raise ValueError("feed down")
    run.refresh_from_db()
    assert (run.status, run.stop_reason) == ("failed", "error")
    assert run.error == "ValueError: feed down" and "Traceback" in run.error_traceback
