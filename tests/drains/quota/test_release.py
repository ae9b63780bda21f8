"""The weekly reserve is released over its last hours before the reset and never before, end to
end: a burst ``drain_halacha`` run with the real ``anthropic`` SDK against the stand-in's quota
model, the week compressed to seconds (the release over the last 6 s). At the ceiling before the
release the run waits at zero calls (drains/runner/session_wait.py); in the release it follows the
ceiling as it rises, without a refused call and without a call past the ceiling then in force."""

from __future__ import annotations

import io
import json
import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from drains.bursts import get_drain_burst, set_drain_burst
from drains.models import DrainControl, DrainEvent, DrainRun, EventKind
from drains.quota import autopilot
from drains.quota.controls import set_quota_policy
from drains.quota.signals import QuotaSignal, WindowReading
from drains.quota.store import record_signal
from halacha.extractors.anthropic_api import AnthropicExtractor
from tests.factories import make_decisions
from tests.support.anthropic_stub import AnthropicStub, QuotaModel, StubResponse, message_body

pytestmark = pytest.mark.django_db(transaction=True)

EMPTY = json.dumps({"halachot": []})
RELEASE_SECONDS = 6.0


def answer(_request) -> StubResponse:
    return StubResponse(200, message_body(EMPTY), delay=0.02)


@pytest.fixture
def api(monkeypatch, settings):
    settings.HALACHA_EXTRACTOR = "anthropic"
    settings.ANTHROPIC_API_KEY = "sk-ant-release-test"
    settings.HALACHA_MODEL = "claude-sonnet-4-6"
    settings.DRAINS_QUOTA_WEEKLY_RESERVE = 0.10
    settings.DRAINS_QUOTA_SESSION_RESERVE = 0.0
    settings.DRAINS_SESSION_RESUME_SECONDS = 0.05
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


def ceiling_at(t: float, reset: float, release_seconds: float) -> float:
    """The weekly ceiling at epoch ``t`` (reserve 10 %, released linearly over the last hours)."""
    if release_seconds <= 0:
        return 0.90
    return 1.0 - 0.10 * min(1.0, max(0.0, reset - t) / release_seconds)


@pytest.mark.parametrize("release", [RELEASE_SECONDS, 0.0])
def test_the_reserve_is_released_over_its_last_hours_and_never_before(api, settings, release):
    model = QuotaModel(week=0.85, week_per_call=0.01, session_per_call=0.001,
                       week_resets_in=RELEASE_SECONDS + 3)
    api(model)
    # The reset at a whole second (as the headers give it), so the test's ceiling is the drain's.
    reset = model.windows["seven_day"].resets_at = float(int(model.windows["seven_day"].resets_at))
    set_quota_policy(quota_key=AnthropicExtractor().quota_key(), actor="op",
                     reserve_release_hours=release / 3600)
    make_decisions(60)
    set_drain_burst(name="halacha", until=timezone.now() + timedelta(seconds=reset - time.time()),
                    actor="op")

    call_command("drain_halacha", "--trigger", "manual", stdout=io.StringIO(),
                 stderr=io.StringIO())

    answered = [c for c in model.calls if c.answered]
    assert len(answered) == len(model.calls)  # no refused call
    week_end = max(c.after["seven_day"] for c in answered if c.at < reset)
    past_ceiling = [c for c in answered if c.before["seven_day"] >= ceiling_at(c.at, reset, release) - 1e-9]
    assert past_ceiling == []  # concurrency 1: never a call at or past the ceiling in force
    before_release = [c for c in answered if c.at < reset - release]
    # Never before: the week held one call's step (1 %) below the ceiling (90 %), the call that
    # would run it into the ceiling not started.
    assert max(c.after["seven_day"] for c in before_release) == pytest.approx(0.89)
    if release:
        # In the release the drain followed the ceiling up: at most 3 % of the week unused.
        assert any(c.before["seven_day"] >= 0.90 for c in answered)
        assert week_end >= 0.97, week_end
        [run] = DrainRun.objects.all()  # one run waited for the ceiling, it did not end
    else:
        assert week_end == pytest.approx(0.89)  # held below the ceiling to the reset


def test_the_autopilots_burst_ends_at_the_ceiling(api, settings):
    settings.DRAINS_QUOTA_DEFAULT_SPEND_RATE = 0.01
    model = QuotaModel(week=0.85, week_per_call=0.01, session_per_call=0.001, week_resets_in=3600)
    api(model)
    key = AnthropicExtractor().quota_key()
    set_quota_policy(quota_key=key, actor="op", reserve_release_hours=0, autopilot="on")
    make_decisions(20)
    DrainControl.objects.create(name="halacha", quota_key=key)
    now = timezone.now()
    reset = now + timedelta(seconds=model.windows["seven_day"].resets_at - time.time())
    record_signal(quota_key=key, drain="halacha", run_id=None, now=now, signal=QuotaSignal(
        windows=(WindowReading("seven_day", 0.85, reset),), source="api"))
    # Room 5 % at 1 %/h takes 6 h 30 min with the margin and the interval; 1 h is left: due.
    autopilot.run_autopilot(quota_key=key, now=timezone.now())
    assert DrainControl.objects.get(name="halacha").burst_by == "autopilot"

    call_command("drain_halacha", "--trigger", "supervisor", stdout=io.StringIO(),
                 stderr=io.StringIO())

    assert all(c.answered for c in model.calls)
    # One call's step (1 %) below the ceiling: the call that would reach it is not started.
    assert max(c.after["seven_day"] for c in model.calls) == pytest.approx(0.89)
    assert not get_drain_burst("halacha").active  # ended at the ceiling
    [ended] = DrainEvent.objects.filter(kind=EventKind.BURST_ENDED)
    assert "weekly" in ended.message
    status = autopilot.autopilot_status(quota_key=key, now=timezone.now())
    assert status.state == autopilot.AutopilotState.AT_CEILING
