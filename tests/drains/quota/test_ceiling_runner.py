"""The ceiling in the runner, end to end: ``manage.py drain_halacha`` with the real ``anthropic``
SDK against the stand-in's quota model (tests/support/anthropic_stub.py ``QuotaModel``), which
refuses at 1.0 with the rejected unified headers, as the real service does.

What must hold: no refused call; a run stops at a window's ceiling (1 minus its reserve) with the
backoff the refusal would have written, without that call; at concurrency N at most N-1 calls
start past the ceiling (each was in flight when the reading that crossed it came back); the
owner's reserve holds while the owner spends; extra usage stops the drains.
"""

from __future__ import annotations

import io
import json
import math
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command

from drains.models import DrainControl, DrainEvent, DrainRun, EventKind, RunStatus
from drains.quota.controls import set_quota_policy
from drains.quota.models import QuotaSample, QuotaWindow
from drains.quota.signals import QuotaSignal, WindowReading
from drains.quota.store import record_signal
from halacha.extractors.anthropic_api import AnthropicExtractor
from tests.factories import make_decisions
from tests.support.anthropic_stub import (
    AnthropicStub,
    QuotaModel,
    StubResponse,
    message_body,
    owner_steady,
)
from tests.support.items import count

pytestmark = pytest.mark.django_db(transaction=True)

EMPTY = json.dumps({"halachot": []})


def answer(_request) -> StubResponse:
    return StubResponse(200, message_body(EMPTY), delay=0.05)


@pytest.fixture
def api(monkeypatch, settings):
    """The anthropic backend pointed at a stand-in; returns a function that starts one with a
    given quota model."""
    settings.HALACHA_EXTRACTOR = "anthropic"
    settings.ANTHROPIC_API_KEY = "sk-ant-ceiling-test"
    settings.HALACHA_MODEL = "claude-sonnet-4-6"
    settings.DRAINS_QUOTA_WEEKLY_RESERVE = 0.10
    settings.DRAINS_QUOTA_SESSION_RESERVE = 0.0
    settings.DRAINS_QUOTA_RESERVE_RELEASE_HOURS = 6
    settings.DRAINS_CHUNK_SIZE = 5
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
    stubs = []

    def start(model: QuotaModel) -> AnthropicStub:
        stub = AnthropicStub(quota=model, responder=answer).__enter__()
        stubs.append(stub)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", stub.url)
        return stub

    yield start
    for stub in stubs:
        stub.__exit__(None, None, None)


def drain(*args: str) -> str:
    out = io.StringIO()
    call_command("drain_halacha", "--trigger", "manual", "--max-items", "200", *args,
                 stdout=out, stderr=io.StringIO())
    return out.getvalue()


def key() -> str:
    return AnthropicExtractor().quota_key()


def past(model: QuotaModel, window: str, ceiling: float) -> list:
    """The calls that started with ``window`` already at or over ``ceiling``."""
    return [call for call in model.calls if call.before[window] >= ceiling - 1e-9]


def test_concurrency_1__stops_at_the_ceiling_with_the_weekly_backoff_and_no_refusal(api):
    # The week at 80 %, +3 % a call: the measurement, where the drain used to make 7
    # answered calls and then a refused one.
    model = QuotaModel(week=0.80, week_per_call=0.03, session_per_call=0.01,
                       week_resets_in=3 * 86400)
    api(model)
    make_decisions(20)
    drain()

    assert all(call.answered for call in model.calls)  # 0 refused calls
    # 0.80 -> 0.83 -> 0.86 -> 0.89: the third reading is within one call's headroom of the
    # ceiling (0.90; nothing measured yet on this quota, so the default step, 1 %), so no fourth
    # call runs the week into the owner's reserve (it used to: 0.92).
    assert len(model.calls) == 3
    assert past(model, "seven_day", 0.90) == []
    run = DrainRun.objects.get()
    assert run.status == RunStatus.RATE_LIMITED and run.items_done == 3
    assert "quota ceiling: seven_day at 89% is within one call (1.0%) of its ceiling 90%" in (
        run.error)
    control = DrainControl.objects.get(name="halacha")
    week_reset = datetime.fromtimestamp(math.ceil(model.state()["seven_day"][1]), UTC)
    # The reserve's release (6 h here) lifts the ceiling past 89 % + the 1 % headroom 6 h
    # before the reset (6 h x 10 % / 10 %): the backoff lasts until then, not to the reset
    # (session_wait.py).
    assert control.backoff_kind == "weekly"
    assert abs(control.backoff_until - (week_reset - timedelta(hours=6))) < timedelta(seconds=1)
    # Every call's reading is stored: the rows in place, a sample per window per call.
    rows = {w.window: w for w in QuotaWindow.objects.filter(quota_key=key())}
    assert rows["seven_day"].utilization == pytest.approx(0.89)
    assert rows["seven_day"].observed_by == "halacha"
    assert QuotaSample.objects.filter(quota_key=key(), window="seven_day").count() == 3
    assert QuotaSample.objects.filter(run=run).count() == 6

    # The next run makes no call at all: the backoff is in force.
    drain()
    assert len(model.calls) == 3


def test_concurrency_4__at_most_3_calls_past_the_ceiling_and_none_refused(api):
    model = QuotaModel(week=0.70, week_per_call=0.02, session_per_call=0.005,
                       week_resets_in=3 * 86400)
    stub = api(model)
    stub.responder = lambda _r: StubResponse(200, message_body(EMPTY), delay=0.3)
    make_decisions(40)
    drain("--concurrency", "4")

    assert all(call.answered for call in model.calls)
    # 0.70 -> 0.90 takes ten calls; the headroom (one step, 2 % once measured, for the call to
    # start and each in flight) keeps the tenth, and maybe one more while the step is measured.
    assert len(model.calls) >= 8
    assert len(past(model, "seven_day", 0.90)) <= 3
    assert DrainRun.objects.get().status == RunStatus.RATE_LIMITED
    # Every call made was kept (staged and promoted), also those that finished past it.
    assert count("halacha", status="done") == len(model.calls)


def test_the_reserve_holds_while_the_owner_spends(api):
    # The owner spends 1 % of the week every 0.5 s beside the drain; the drain stops at 90 %
    # and the owner goes on into the reserve, which the drain never touches.
    model = QuotaModel(week=0.60, week_per_call=0.01, session_per_call=0.001,
                       week_resets_in=3 * 86400, owner=owner_steady(2.0))
    api(model)
    make_decisions(200)
    drain()

    assert all(call.answered for call in model.calls)
    assert model.owner_calls > 0 and len(model.calls) < 30
    # What the owner spent since the drain's last answer is seen only in the next one: that one
    # call may start just past the ceiling (by what the owner spent in between), never more.
    assert len(past(model, "seven_day", 0.90)) <= 1
    assert all(call.before["seven_day"] < 0.92 for call in model.calls)
    assert DrainRun.objects.get().status == RunStatus.RATE_LIMITED
    calls = len(model.calls)
    # The owner fills the rest of the week; no drain call follows.
    model.set("seven_day", 0.97)
    drain()
    assert len(model.calls) == calls


def test_the_owner_spends_the_windows_last_share_between_two_drain_calls__no_refusal(api):
    # bench/autopilot.py's seed 2: the drain's answer says 98 % of the 5-hour window, then the
    # owner spends the last 2 % before the drain's next call, which the drain would see only in
    # that call's answer: a refusal. The headroom (the step one call moves the window, measured
    # from the quota's own samples: 2 %) keeps the drain from starting that call.
    spent: list[float] = []

    def owner(_t0: float, t1: float) -> float:
        # One call of the owner's, as soon as the drain's latest answer said 98 %.
        if not spent and model.calls and model.calls[-1].after["five_hour"] >= 0.98 - 1e-9:
            spent.append(t1)
            return 1.0
        return 0.0

    model = QuotaModel(week=0.30, session=0.50, week_per_call=0.002, session_per_call=0.02,
                       session_resets_in=3 * 3600, week_resets_in=3 * 86400, owner=owner)
    api(model)
    make_decisions(20)
    # A first run measures the step: six answers 2 % apart, stored as samples.
    drain("--max-items", "6")
    assert len(model.calls) == 6 and all(call.answered for call in model.calls)

    model.set("five_hour", 0.92)  # the owner's morning: the window is nearly full
    drain()
    model.state()  # the owner's turn comes now (their call between the drain's two)

    assert spent, "the owner spent the window's last share"
    assert model.state()["five_hour"][0] == pytest.approx(1.0)
    assert [call.answered for call in model.calls] == [True] * 9  # 0 refused calls
    # 0.92 -> 0.94 -> 0.96 -> 0.98: the third answer is within one call of the ceiling.
    assert model.calls[-1].after["five_hour"] == pytest.approx(0.98)
    run = DrainRun.objects.order_by("pk").last()
    assert run.status == RunStatus.RATE_LIMITED and run.items_done == 3
    assert "five_hour at 98% is within one call (2.0%) of its ceiling 100%" in run.error
    control = DrainControl.objects.get(name="halacha")
    five_reset = datetime.fromtimestamp(math.ceil(model.state()["five_hour"][1]), UTC)
    assert control.backoff_kind == "session"
    assert abs(control.backoff_until - five_reset) < timedelta(seconds=1)


def test_a_stored_reading_at_the_ceiling_skips_the_run_without_a_call(api):
    model = QuotaModel(week=0.50)
    api(model)
    make_decisions(3)
    now = datetime.now(UTC)
    five_reset = now + timedelta(hours=2)
    # Another drain (or process) on the same quota saw the 5-hour window at its ceiling.
    set_quota_policy(quota_key=key(), actor="ops", session_reserve=0.2)
    record_signal(
        quota_key=key(), drain="metadata", run_id=None, now=now,
        signal=QuotaSignal(windows=(WindowReading("five_hour", 0.85, five_reset, "allowed"),
                                    WindowReading("seven_day", 0.5, now + timedelta(days=2)))),
    )
    drain()

    assert model.calls == []
    assert not DrainRun.objects.exists()
    control = DrainControl.objects.get(name="halacha")
    assert control.backoff_kind == "session" and control.backoff_until == five_reset
    skipped = DrainEvent.objects.get(kind=EventKind.SKIPPED)
    assert "five_hour at 85% is at or over its ceiling 80%" in skipped.message


def test_a_reading_whose_reset_passed_does_not_stop_the_drain(api):
    model = QuotaModel(week=0.30)
    api(model)
    make_decisions(2)
    now = datetime.now(UTC)
    record_signal(
        quota_key=key(), drain="halacha", run_id=None, now=now - timedelta(hours=6),
        signal=QuotaSignal(windows=(
            WindowReading("five_hour", 1.0, now - timedelta(minutes=1), "rejected"),)),
    )
    drain()
    assert len(model.calls) == 2  # the window reset: the reading says nothing any more


def test_extra_usage_stops_the_drains(api, settings):
    settings.DIGEST_RECIPIENTS = []
    # No weekly reserve: only the plan's own limit. The first call fills the week; the service
    # answers it from extra usage (the account allows overage): isUsingOverage.
    model = QuotaModel(week=0.985, week_per_call=0.03, overage=True, week_resets_in=86400)
    api(model)
    set_quota_policy(quota_key=key(), actor="ops", weekly_reserve=0)
    make_decisions(5)
    drain()

    assert len(model.calls) == 1
    assert not any(call.using_overage for call in model.calls)  # nothing spent beyond the plan
    run = DrainRun.objects.get()
    assert run.status == RunStatus.RATE_LIMITED
    assert "isUsingOverage" in run.error
    control = DrainControl.objects.get(name="halacha")
    assert control.backoff_kind == "extra_usage"
    assert control.enabled is False  # paused for an operator, as a refusal for extra usage is
    assert all(row.using_overage for row in QuotaWindow.objects.filter(quota_key=key()))
