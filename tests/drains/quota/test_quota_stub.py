"""The API stand-in's quota model, through the real ``anthropic`` SDK: what tests of the ceiling,
the reserve and the autopilot (and bench/autopilot.py) stand on."""

from __future__ import annotations

import math

import anthropic
import pytest

from tests.support.anthropic_stub import (
    AnthropicStub,
    QuotaModel,
    StubResponse,
    message_body,
    owner_at,
)


class Clock:
    def __init__(self, t: float = 1_800_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def answer(_request):
    return StubResponse(200, message_body("ok"))


def call(client) -> tuple[int, dict[str, str]]:
    try:
        raw = client.messages.with_raw_response.create(
            model="claude-sonnet-4-6", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )
    except anthropic.RateLimitError as exc:
        return 429, dict(exc.response.headers)
    return 200, dict(raw.headers)


@pytest.fixture
def client_for():
    def make(stub):
        return anthropic.Anthropic(api_key="sk-test", base_url=stub.url, max_retries=0)

    return make


def test_the_week_at_80_percent_3_per_call__7_answered_then_refused_with_rejected_headers(client_for):
    clock = Clock()
    quota = QuotaModel(week=0.80, week_per_call=0.03, session_per_call=0.01, clock=clock)
    with AnthropicStub(quota=quota, responder=answer) as stub, client_for(stub) as client:
        statuses = [call(client) for _ in range(9)]
    assert [s for s, _ in statuses] == [200] * 7 + [429, 429]
    ok_headers = statuses[0][1]
    assert ok_headers["anthropic-ratelimit-unified-7d-utilization"] == "0.83"
    assert ok_headers["anthropic-ratelimit-unified-status"] == "allowed"
    assert ok_headers["anthropic-ratelimit-unified-5h-utilization"] == "0.01"
    assert statuses[4][1]["anthropic-ratelimit-unified-7d-status"] == "allowed_warning"
    refused = statuses[7][1]
    assert refused["anthropic-ratelimit-unified-status"] == "rejected"
    assert refused["anthropic-ratelimit-unified-7d-utilization"] == "1"
    assert refused["anthropic-ratelimit-unified-representative-claim"] == "seven_day"
    assert refused["anthropic-ratelimit-unified-reset"] == str(math.ceil(quota.windows["seven_day"].resets_at))
    # A refused call took no queued answer and added nothing.
    assert [c.answered for c in quota.calls] == [True] * 7 + [False, False]


def test_windows_reset_at_their_reset_time_and_the_5_hour_window_opens_with_the_next_call():
    clock = Clock()
    quota = QuotaModel(week=0.5, session=0.9, session_resets_in=60, week_resets_in=3600,
                       week_per_call=0.1, session_per_call=0.1, clock=clock)
    assert quota.call()[0] is True
    assert quota.call()[0] is False  # the session is full
    clock.t += 61  # past the 5-hour reset
    assert quota.state()["five_hour"] == (0.0, None)  # expired, not open
    answered, headers = quota.call()
    assert answered and headers["anthropic-ratelimit-unified-5h-reset"] == str(math.ceil(clock.t + 5 * 3600))
    clock.t += 3600  # past the weekly reset
    week = quota.state()["seven_day"]
    assert week[0] == 0.0 and week[1] == pytest.approx(1_800_000_000.0 + 3600 + 7 * 86400)
    assert [(r.window, r.utilization) for r in quota.resets] == [
        ("five_hour", 1.0), ("seven_day", pytest.approx(0.7))
    ]


def test_the_owner_spends_from_the_same_windows_on_its_own_schedule():
    clock = Clock()
    start = clock.t
    quota = QuotaModel(week=0.0, week_resets_in=100, week_per_call=0.1, session_per_call=0.2,
                       owner=owner_at([start + 10, start + 20, start + 150]), clock=clock)
    clock.t = start + 30
    assert quota.state()["seven_day"][0] == pytest.approx(0.2)
    assert quota.state()["five_hour"][0] == pytest.approx(0.4)
    clock.t = start + 200  # the week reset at +100 with the owner's 2 calls; one more after
    assert quota.state()["seven_day"][0] == pytest.approx(0.1)
    assert [(r.window, r.at - start) for r in quota.resets] == [("seven_day", 100)]
    assert quota.resets[0].utilization == pytest.approx(0.2)


def test_overage_on__a_full_window_is_answered_with_using_overage_headers():
    clock = Clock()
    quota = QuotaModel(week=1.0, overage=True, clock=clock)
    answered, headers = quota.call()
    assert answered and quota.calls[-1].using_overage
    assert headers["anthropic-ratelimit-unified-status"] == "rejected"
    assert headers["anthropic-ratelimit-unified-overage-status"] == "allowed"
