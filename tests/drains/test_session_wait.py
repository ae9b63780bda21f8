"""Item 7, no idle open window: in a burst, after a session (5-hour) limit, the first call after
the reset starts within 60 s of it (drains/runner/session_wait.py: the run waits at zero calls,
checkpointing, and goes on with the probe). Real ``drain_halacha`` runs in this process, the
real SDK against the API stand-in with its quota model (the 5-hour window scaled to seconds)."""

from __future__ import annotations

import io
import json
import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from drains.bursts import set_drain_burst
from drains.models import DrainEvent, DrainRun, EventKind, RunStatus, StopReason
from tests import factories
from tests.support.anthropic_stub import AnthropicStub, QuotaModel, StubResponse, message_body
from tests.support.items import statuses

pytestmark = pytest.mark.django_db(transaction=True)

EMPTY = json.dumps({"halachot": []})


def answer(_request):
    return StubResponse(200, message_body(EMPTY), delay=0.05)


@pytest.fixture
def api_with_quota(monkeypatch, settings):
    def start(quota: QuotaModel):
        stub = AnthropicStub(quota=quota, responder=answer)
        stub.__enter__()
        monkeypatch.setenv("ANTHROPIC_BASE_URL", stub.url)
        monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
        settings.HALACHA_EXTRACTOR = "anthropic"
        settings.ANTHROPIC_API_KEY = "sk-ant-test-key"
        settings.HALACHA_MODEL = "claude-sonnet-4-6"
        settings.DRAINS_SESSION_RESUME_SECONDS = 0.5
        started.append(stub)
        return stub

    started: list[AnthropicStub] = []
    yield start
    for stub in started:
        stub.__exit__(None, None, None)


def drain(*args: str) -> str:
    out = io.StringIO()
    call_command("drain_halacha", "--trigger", "manual", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.mark.parametrize("concurrency", [1, 3])
def test_burst__session_limit__the_run_waits_and_calls_again_within_seconds_of_the_reset(
    api_with_quota, concurrency
):
    # The 5-hour window at 85 %, +5 % a call, resetting 4 s from now: three calls go through,
    # then the window is at its ceiling (100 %, no session reserve) and the run stops calling.
    quota = QuotaModel(session=0.85, session_per_call=0.05, session_resets_in=4.0,
                       week=0.2, week_per_call=0.001)
    stub = api_with_quota(quota)
    factories.make_decisions(8)
    set_drain_burst(name="halacha", until=timezone.now() + timedelta(minutes=10), actor="op")

    drain("--concurrency", str(concurrency))

    [run] = DrainRun.objects.all()  # one run, not ended by the limit
    assert (run.status, run.stop_reason, run.items_done) == (
        RunStatus.SUCCEEDED, StopReason.BACKLOG_EMPTY, 8
    )
    assert set(statuses()) <= {"done"}
    [reset] = [r for r in quota.resets if r.window == "five_hour"]
    requests = sorted(stub.messages(), key=lambda r: r.at)
    refused = [r for r in requests if r.status == 429]
    # The ceiling (drains/runner/spending.py) stops the run at the full window; with calls in
    # flight, those started on an older reading may still be refused, all before the reset.
    assert len(refused) <= (0 if concurrency == 1 else 2 * concurrency)
    # The stub's clock is epoch seconds, the requests' monotonic: convert the reset.
    reset_monotonic = reset.at - time.time() + time.monotonic()
    after = [r for r in requests if r.at >= reset_monotonic - 0.05]
    assert after and all(r.status == 200 for r in after)
    first = after[0].at - reset_monotonic
    assert first < 60, first  # within 60 s of the reset (here: the 0.5 s resume plus polling)
    assert first < 5, first
    # The probe rule: the first call after the reset went alone.
    assert after[1].at >= after[0].answered_at
    [backoff] = DrainEvent.objects.filter(kind=EventKind.BACKOFF)
    assert backoff.data["kind"] == "session"
    [probe] = DrainEvent.objects.filter(kind=EventKind.PROBE)
    assert probe.data["outcome"] == "ok"


def test_normal_run__a_session_limit_still_ends_the_run(api_with_quota):
    quota = QuotaModel(session=0.95, session_per_call=0.05, session_resets_in=2.0)
    api_with_quota(quota)
    factories.make_decisions(3)

    drain()

    [run] = DrainRun.objects.all()
    assert (run.status, run.items_done) == (RunStatus.RATE_LIMITED, 1)


def test_burst__a_session_limit_that_resets_after_the_deadline_ends_the_run(api_with_quota):
    quota = QuotaModel(session=0.95, session_per_call=0.05, session_resets_in=120.0)
    api_with_quota(quota)
    factories.make_decisions(3)
    set_drain_burst(name="halacha", until=timezone.now() + timedelta(seconds=30), actor="op")

    started = time.monotonic()
    drain()

    [run] = DrainRun.objects.all()
    assert run.status == RunStatus.RATE_LIMITED and time.monotonic() - started < 20
