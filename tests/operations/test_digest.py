"""The daily digest for a prepared day: per drain items done, its product, bursts, backoffs and
failures in the last 24 hours — and nothing from before the window."""

from __future__ import annotations

import io
import socket
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.core import mail
from django.core.management import call_command
from django.test import override_settings
from freezegun import freeze_time

from drains import registry
from drains.events import record_event
from drains.models import DrainControl, DrainRun, RunMode, RunStatus
from halacha.models import CourtDecision, Halacha
from operations.digest import build_digest, render_digest, send_digest
from tests.support.items import set_state

TLV = ZoneInfo("Asia/Jerusalem")
NOW = datetime(2026, 3, 3, 7, 12, tzinfo=TLV)  # the digest's own minute, Tuesday
BEFORE = NOW - timedelta(hours=25)  # just outside the window


def at(hour: int, minute: int = 0, day: int = 2) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=TLV)


def run(
    drain,
    started,
    status,
    *,
    minutes=5,
    items_done=0,
    items_failed=0,
    error="",
    mode=RunMode.NORMAL,
):
    return DrainRun.objects.create(
        drain=drain,
        mode=mode,
        host="h",
        pid=1,
        started_at=started,
        finished_at=None if status == RunStatus.RUNNING else started + timedelta(minutes=minutes),
        status=status,
        items_done=items_done,
        items_failed=items_failed,
        error=error,
    )


def decision(n, **fields):
    return CourtDecision.objects.create(external_id=f"d{n}", text="text", **fields)


def halachot(d, count, when):
    with freeze_time(when):
        for i in range(count):
            Halacha.objects.create(
                decision=d, ordinal=i + 1, rule="r", quote="q", extractor="offline"
            )


@pytest.fixture
def prepared_day(db):
    # halacha: 3 decisions done in the window, 1 the day before
    for n, when in enumerate([at(9), at(13), at(6, day=3), BEFORE]):
        d = decision(n)
        set_state("halacha", [d], "done", done_at=when)
        halachot(d, 2, when)
    # metadata: 2 in the window, 1 pending
    set_state("metadata", [decision(10)], "done", done_at=at(10))
    set_state("metadata", [decision(11)], "done", done_at=at(23))
    decision(12)
    # runs
    run("halacha", at(8, 55), RunStatus.SUCCEEDED, items_done=2)
    run("halacha", at(12, 55), RunStatus.RATE_LIMITED, items_done=1, items_failed=1)
    run(
        "halacha",
        at(15, 10),
        RunStatus.FAILED,
        error="ExtractionError: the model returned no JSON\nTraceback ...",
    )
    run("halacha", BEFORE, RunStatus.FAILED, error="an old failure")  # outside the window
    run("metadata", at(4, 0, day=3), RunStatus.CRASHED, error="process 4242 died without finishing")
    run(
        "fetch_decisions",
        at(17, 17),
        RunStatus.FAILED,
        error="feed answered HTTP 503",
        mode=RunMode.JOB,
    )
    run("fetch_decisions", at(18, 17), RunStatus.SUCCEEDED, mode=RunMode.JOB)
    run("send_digest", at(7, 12), RunStatus.SUCCEEDED, mode=RunMode.JOB)
    # bursts: one from the day before is not repeated; today alice started one and bob stopped it
    with freeze_time(BEFORE):
        record_event(drain="halacha", kind="burst_on", message="burst on until Sat", actor="carol")
    with freeze_time(at(9, 30)):
        record_event(
            drain="halacha",
            kind="burst_on",
            message="burst on until Sat 07 Mar 18:00 IST",
            actor="alice",
        )
    with freeze_time(at(21, 5)):
        record_event(drain="halacha", kind="burst_off", message="burst stopped", actor="bob")
    with freeze_time(at(22)):
        record_event(
            drain="metadata",
            kind="burst_on",
            message="burst on until Sat 07 Mar 18:00 IST",
            actor="alice",
        )
    DrainControl.objects.create(name="metadata", burst_until=datetime(2026, 3, 7, 18, tzinfo=TLV))
    DrainControl.objects.create(
        name="halacha",
        backoff_until=NOW + timedelta(hours=2),
        backoff_reason="HTTP 429: rate limit reached; resets 09:12",
    )


@freeze_time(NOW)
def test_digest_counts_the_prepared_day_per_drain(prepared_day):
    digest = build_digest()
    halacha, metadata = digest.drains
    assert (halacha.name, halacha.items_done, halacha.produced, halacha.product) == (
        "halacha", 3, 6, "halachot")
    assert (halacha.runs, halacha.items_failed, halacha.rate_limited_runs) == (3, 1, 1)
    assert [e.actor for e in halacha.bursts_started] == ["alice"]
    assert [e.actor for e in halacha.bursts_ended] == ["bob"]
    assert halacha.burst_until is None
    assert halacha.backoff_until == NOW + timedelta(hours=2)
    assert [f.error for f in halacha.failures] == ["ExtractionError: the model returned no JSON"]
    # the metadata drain's own product, one record per decision it finished: never halachot
    assert (metadata.items_done, metadata.produced, metadata.product, metadata.runs) == (
        2, 2, "metadata records", 1)
    assert [(f.status, f.error) for f in metadata.failures] == [
        ("crashed", "process 4242 died without finishing")
    ]
    assert metadata.burst_until == datetime(2026, 3, 7, 18, tzinfo=TLV)
    jobs = {j.name: j for j in digest.jobs}
    assert set(jobs) == set(registry.jobs())  # every scheduled job that is not a drain
    assert (jobs["fetch_decisions"].runs, jobs["fetch_decisions"].succeeded) == (2, 1)
    assert [f.error for f in jobs["fetch_decisions"].failures] == ["feed answered HTTP 503"]
    assert digest.failure_count == 3


@freeze_time(NOW)
def test_digest_text_for_the_prepared_day(prepared_day):
    subject, body = render_digest(build_digest())
    assert subject == "[drains] digest Tue 03 Mar 2026: 5 items done, 3 failures"
    assert body.startswith(
        "Drains digest for Mon 2026-03-02 07:12 IST - Tue 2026-03-03 07:12 IST (Asia/Jerusalem).\n"
    )
    expected_halacha = """Drain halacha
  items done:         3 (3 runs, 1 item failed)
  halachot made:      6
  bursts:             1 started, 1 ended
    Mon 2026-03-02 09:30 IST  burst on until Sat 07 Mar 18:00 IST (alice)
    Mon 2026-03-02 21:05 IST  burst stopped (bob)
  backoffs:           1 rate-limited run; backing off until Tue 2026-03-03 09:12 IST (HTTP 429: rate limit reached; resets 09:12)
  failures:           1
    Mon 2026-03-02 15:15 IST  run """
    assert expected_halacha in body
    assert "failed: ExtractionError: the model returned no JSON\n" in body
    assert "Traceback" not in body and "an old failure" not in body and "carol" not in body
    assert "bursts:             1 started, 0 ended; active until Sat 2026-03-07 18:00 IST" in body
    assert "crashed: process 4242 died without finishing" in body
    assert "  fetch_decisions: 2 runs, 1 succeeded, 1 failed\n" in body
    assert "failed: feed answered HTTP 503" in body


@freeze_time(NOW)
@override_settings(DIGEST_RECIPIENTS=["ops@example.com", "lead@example.com"])
def test_send_digest_mails_the_recipients_through_the_email_backend(prepared_day):
    result = send_digest()
    assert result.sent == 1
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["ops@example.com", "lead@example.com"]
    assert message.subject == result.subject
    assert "Drain metadata" in message.body


@freeze_time(NOW)
@override_settings(DIGEST_RECIPIENTS=[])
def test_without_recipients_nothing_is_sent(prepared_day):
    result = send_digest()
    assert (result.sent, mail.outbox) == (0, [])
    assert "Drain halacha" in result.body


@freeze_time(NOW)
def test_an_empty_day_reads_as_nothing_done(db):
    subject, body = render_digest(build_digest())
    assert subject == "[drains] digest Tue 03 Mar 2026: 0 items done, 0 failures"
    assert "  items done:         0 (0 runs, 0 items failed)" in body
    assert "  failures:           0" in body


@freeze_time(NOW)
def test_digest_query_count_does_not_grow_with_runs(prepared_day, django_assert_max_num_queries):
    for i in range(30):
        run("halacha", at(10, i), RunStatus.FAILED, error=f"e{i}")
    # 8 for the day's runs, events, controls and what each of the 2 drains made; 4 for the quota
    # week's usage (one aggregate over the runs, the drains' quota keys, what each producing
    # drain made in the week); 1 for the quota windows, policies and keys (one round trip; no
    # quota key is known here). Per drain, never per run.
    with django_assert_max_num_queries(13):
        build_digest()


@freeze_time(NOW)
@override_settings(DIGEST_RECIPIENTS=["ops@example.com"], DRAINS_CRON_TZ="Asia/Jerusalem")
def test_send_digest_command_mails_and_records_a_job_run(prepared_day):
    out = io.StringIO()
    call_command("send_digest", trigger="cron", stdout=out)  # as its cron line calls it
    assert len(mail.outbox) == 1
    assert "Digest sent to ops@example.com" in out.getvalue()
    run = DrainRun.objects.filter(drain="send_digest").latest("started_at")
    assert (run.mode, run.trigger, run.status) == (RunMode.JOB, "cron", RunStatus.SUCCEEDED)
    assert run.started_at == NOW
    # the run holds the digest's cron slot: the latest 07:12 at or before now
    slot = run.slot.astimezone(ZoneInfo("Asia/Jerusalem"))
    assert (slot.hour, slot.minute) == (7, 12) and timedelta(0) <= NOW - run.slot < timedelta(days=1)


def test_an_unreachable_mail_server_fails_the_recorded_run(db, settings):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # The ``settings`` fixture alone: mixed with an @override_settings decorator, its teardown
    # left the SMTP backend in place for every later test.
    settings.DIGEST_RECIPIENTS = ["ops@example.com"]
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", port, 5
    with pytest.raises(ConnectionRefusedError):
        call_command("send_digest", stdout=io.StringIO())
    run = DrainRun.objects.get(drain="send_digest")
    assert run.status == RunStatus.FAILED
    assert "ConnectionRefusedError" in run.error


@override_settings(DIGEST_RECIPIENTS=[])
def test_send_digest_without_recipients_prints_it_and_says_so(db):
    out, err = io.StringIO(), io.StringIO()
    call_command("send_digest", stdout=out, stderr=err)
    assert mail.outbox == []
    assert "DIGEST_RECIPIENTS is empty" in err.getvalue()
    assert out.getvalue().startswith("Subject: [drains] digest ")


@override_settings(DIGEST_RECIPIENTS=["ops@example.com"])
def test_send_digest_dry_run_sends_nothing(db):
    out = io.StringIO()
    call_command("send_digest", dry_run=True, trigger="manual", stdout=out)
    assert mail.outbox == []
    assert "Drain halacha" in out.getvalue()
    assert DrainRun.objects.get(drain="send_digest").trigger == "manual"


@freeze_time(NOW)
def test_the_plan_by_limit_kind_shows_in_the_digest(db):
    """A burst a weekly limit ended, a pause on a spend cap, slow-downs: what an operator
    must know the next morning, each in the drain's lines."""
    with freeze_time(at(10)):
        record_event(drain="halacha", kind="slow_down", message="slowing down", actor="runtime")
        record_event(drain="halacha", kind="slow_down", message="slowing down", actor="runtime")
    with freeze_time(at(11)):
        record_event(
            drain="halacha", kind="burst_ended", actor="runtime:cron",
            message="weekly limit reached; it resets Mon 09:00, after the burst deadline "
            "Sat 18:00: the burst ended early",
        )
    with freeze_time(at(12)):
        record_event(drain="metadata", kind="paused", actor="runtime:cron",
                     message="API spend limit reached (seen by halacha)")
    DrainControl.objects.create(name="metadata", enabled=False)
    digest = build_digest()
    halacha, metadata = (next(d for d in digest.drains if d.name == n)
                         for n in ("halacha", "metadata"))
    assert (halacha.slow_downs, len(halacha.bursts_ended), halacha.enabled) == (2, 1, True)
    assert ([e.kind for e in metadata.paused], metadata.enabled) == (["paused"], False)
    _, body = render_digest(digest)
    assert "slowed down:        2 times by per-minute API limits (no backoff)" in body
    assert "the burst ended early (runtime:cron)" in body
    assert "PAUSED Mon 2026-03-02 12:00 IST: API spend limit reached (seen by halacha)" in body
    assert "disabled now: no run starts until an operator enables it" in body
