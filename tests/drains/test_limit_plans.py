"""The plan by limit kind (issue 14): what the runtime and the supervisor do after each kind.

- a session limit: a backoff, then one probe alone, then full concurrency (fake CLI);
- a weekly limit whose reset is after the burst deadline: the burst ends at once, with its note
  (fake CLI; and the supervisor for a burst started while the backoff was in force);
- a spend cap: every drain on the quota paused and the operators emailed at once (API stub);
- a per-minute 429: slowed down, not stopped; a long backoff only when they repeat (API stub);
- a 529: retried inside the run; still overloaded after the retries, a short backoff and the
  item not counted as failed (API stub).

The runs are real ``drain_halacha`` runs in this process, against the real SDK talking HTTP to
the stub, or the claude-cli backend running the fake ``claude`` executable as a subprocess.
"""

from __future__ import annotations

import io
import json
import os
import socket
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command
from django.utils import timezone
from freezegun import freeze_time

from drains.bursts import set_drain_burst
from drains.models import (
    NOTE_KINDS,
    DrainControl,
    DrainEvent,
    DrainRun,
    EventKind,
    RunStatus,
    StopReason,
)
from drains.quota import policy
from drains.quota.backoff import record_backoff
from drains.quota.kinds import Kind, LimitKind, weekly_limit_message
from halacha.extractors.anthropic_api import AnthropicExtractor
from tests import factories
from tests.support.anthropic_stub import AnthropicStub, error_body
from tests.support.db import ROOT
from tests.support.items import states, statuses

pytestmark = pytest.mark.django_db(transaction=True)

FAKE = ROOT / "tests" / "support" / "fake_claude" / "claude"
EMPTY = json.dumps({"halachot": []})
JERUSALEM = ZoneInfo("Asia/Jerusalem")


def drain(*args: str) -> str:
    out = io.StringIO()
    call_command("drain_halacha", "--trigger", "manual", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def events(kind: str, drain_name: str = "halacha") -> list[DrainEvent]:
    return list(DrainEvent.objects.filter(drain=drain_name, kind=kind).order_by("id"))


# --- the rules --------------------------------------------------------------------------------


def test_each_kind_has_its_plan():
    plans = {kind.value: policy.limit_plan(kind) for kind in LimitKind}
    assert plans == {
        "session": "backoff", "weekly": "backoff", "weekly_model": "backoff",
        "unknown": "backoff", "overloaded": "retry", "api_requests": "slow_down",
        "api_input_tokens": "slow_down", "api_output_tokens": "slow_down",
        "spend_cap": "operator", "extra_usage": "operator",
        "host_fault": "backoff",  # blocked: no call until a probe works (issue 29)
    }


def test_a_host_fault_is_probed_after_1_minute_then_twice_as_long_each_time_at_most_hourly():
    intervals, previous = [], None
    for _ in range(9):
        previous = policy.host_probe_interval(previous)
        intervals.append(int(previous.total_seconds() // 60))
    assert intervals == [1, 2, 4, 8, 16, 32, 60, 60, 60]


def test_a_weekly_limit_outlasts_a_burst_only_when_it_resets_at_or_after_the_deadline():
    now = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    deadline = now + timedelta(days=4)
    outlasts = lambda kind, reset: policy.weekly_outlasts_burst(  # noqa: E731
        kind=kind, reset_at=reset, burst_until=deadline, now=now
    )
    assert outlasts(LimitKind.WEEKLY, deadline)
    assert outlasts(LimitKind.WEEKLY_MODEL, deadline + timedelta(days=1))
    assert not outlasts(LimitKind.WEEKLY, deadline - timedelta(minutes=1))  # resets in time
    assert not outlasts(LimitKind.SESSION, deadline + timedelta(days=1))  # not a weekly limit
    # no burst on (none, or past its deadline): nothing to end
    assert not policy.weekly_outlasts_burst(
        kind=LimitKind.WEEKLY, reset_at=deadline, burst_until=None, now=now
    )
    assert not policy.weekly_outlasts_burst(
        kind=LimitKind.WEEKLY, reset_at=deadline, burst_until=now, now=now
    )


def test_the_waits_are_bounded_and_jittered():
    now = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    wait = lambda seconds, jitter: policy.slow_down_wait(  # noqa: E731
        reset_at=now + timedelta(seconds=seconds), now=now, max_wait=60, jitter=jitter
    )
    assert wait(10, 0) == 10 and wait(10, 0.999) == pytest.approx(12.5, abs=0.01)
    assert wait(-5, 0) == 1.0  # a reset already past: still a short pause
    assert wait(3600, 0) == 60  # a per-minute limit never waits longer than the bound
    assert [policy.slowed_limit(in_flight_limit=n) for n in (8, 5, 2, 1)] == [4, 2, 1, 1]
    assert [policy.overload_retry_wait(retry=r, base=2, jitter=0) for r in (1, 2, 3)] == [2, 4, 8]


# --- the API stub -----------------------------------------------------------------------------


@pytest.fixture
def api(monkeypatch, settings):
    with AnthropicStub() as stub:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", stub.url)
        monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
        settings.HALACHA_EXTRACTOR = "anthropic"
        settings.ANTHROPIC_API_KEY = "sk-ant-test-key"
        settings.HALACHA_MODEL = "claude-sonnet-4-6"
        settings.DIGEST_RECIPIENTS = ["ops@example.org", "oncall@example.org"]
        yield stub


def minute_limit(seconds: int = 1) -> dict[str, str]:
    reset = (datetime.now(UTC) + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "retry-after": str(seconds),
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": reset,
    }


def rate_limit_429(stub: AnthropicStub, seconds: int = 1, *, delay: float = 0.0) -> None:
    stub.enqueue(
        429,
        error_body("rate_limit_error", "Number of requests has exceeded your per-minute limit."),
        minute_limit(seconds),
        delay=delay,
    )


def test_per_minute_429__slowed_down_not_stopped(api, settings):
    settings.DRAINS_SLOW_DOWN_RECOVER_CALLS = 2
    factories.make_decisions(6)
    # Answered after a moment, so that both first calls have reached the stub by then.
    rate_limit_429(api, delay=0.2)
    for _ in range(6):
        api.reply(EMPTY, delay=0.3)

    out = drain("--concurrency", "2")

    run = DrainRun.objects.get()
    assert (run.status, run.stop_reason, run.items_done) == (
        RunStatus.SUCCEEDED, StopReason.BACKLOG_EMPTY, 6
    )
    assert "6 done, 0 failed" in out and "(slowed down 1 time)" in out, out
    assert set(statuses()) <= {"done"}
    # No backoff: the quota was never stopped.
    assert DrainControl.objects.get(name="halacha").backoff_until is None
    assert events(EventKind.BACKOFF) == []
    [slow] = events(EventKind.SLOW_DOWN)
    assert (slow.data["kind"], slow.data["was"], slow.data["in_flight"]) == ("api_requests", 2, 1)
    assert slow.message.startswith("API requests per minute: slowing down to 1 call(s) in flight")

    requests = sorted(api.messages(), key=lambda r: r.at)
    assert [r.status for r in requests].count(429) == 1 and len(requests) == 7
    limited = next(r for r in requests if r.status == 429)
    after = [r for r in requests if r.at > limited.answered_at]
    # The pause: no call started within the second the limit asked for.
    assert after[0].at - limited.answered_at >= 1.0
    # Slowed: one call at a time, until calls went through; then two at a time again.
    assert after[1].at >= after[0].answered_at
    assert any(b.at < a.answered_at for a, b in zip(after[1:], after[2:], strict=False)), [
        (round(r.at - limited.at, 2), round(r.answered_at - limited.at, 2)) for r in after
    ]


def test_per_minute_429s_that_keep_coming__a_long_backoff_after_the_repeats(api, settings):
    settings.DRAINS_SLOW_DOWN_REPEATS = 3
    settings.DRAINS_SLOW_DOWN_BACKOFF_SECONDS = 300
    factories.make_decisions(2)
    for _ in range(3):
        rate_limit_429(api)
    api.reply(EMPTY)  # must not be called

    before = timezone.now()
    drain()

    assert len(api.messages()) == 3  # two slow-downs, then the third in a row stops the run
    run = DrainRun.objects.get()
    assert (run.status, run.items_done, run.items_failed) == (RunStatus.RATE_LIMITED, 0, 0)
    assert len(events(EventKind.SLOW_DOWN)) == 2
    control = DrainControl.objects.get(name="halacha")
    assert control.backoff_kind == LimitKind.API_REQUESTS
    assert control.backoff_until >= before + timedelta(seconds=300)
    assert "3 per-minute limits in a row" in control.backoff_reason
    # Nothing counted against the decisions: they were refused, not failed.
    assert states() == {(0, "pending")}


def test_529__retried_inside_the_run(api, settings):
    settings.DRAINS_OVERLOAD_RETRY_SECONDS = 0.2
    settings.DRAINS_OVERLOAD_RETRIES = 3
    factories.make_decisions(2)
    api.enqueue(529, error_body("overloaded_error", "Overloaded"))
    api.enqueue(529, error_body("overloaded_error", "Overloaded"))
    api.reply(EMPTY)
    api.reply(EMPTY)

    out = drain()

    run = DrainRun.objects.get()
    assert (run.status, run.items_done, run.items_failed) == (RunStatus.SUCCEEDED, 2, 0)
    assert "(2 overloaded call(s) retried)" in out, out
    requests = api.messages()
    assert [r.status for r in requests] == [529, 529, 200, 200]
    # The same decision each time, after a wait that doubles (0.2 s, then 0.4 s).
    assert len({json.dumps(r.body["messages"]) for r in requests[:3]}) == 1
    assert requests[1].at - requests[0].answered_at >= 0.2
    assert requests[2].at - requests[1].answered_at >= 0.4
    assert DrainControl.objects.get(name="halacha").backoff_until is None
    assert {attempts for attempts, _ in states()} == {0}


def test_529_that_outlasts_the_retries__a_short_backoff_and_the_item_not_failed(api, settings):
    settings.DRAINS_OVERLOAD_RETRY_SECONDS = 0.05
    settings.DRAINS_OVERLOAD_RETRIES = 2
    settings.DRAINS_OVERLOAD_BACKOFF_SECONDS = 300
    factories.make_decisions(2)
    for _ in range(3):
        api.enqueue(529, error_body("overloaded_error", "Overloaded"))
    api.reply(EMPTY)  # must not be called

    before = timezone.now()
    drain()

    assert [r.status for r in api.messages()] == [529, 529, 529]  # the call and two retries
    run = DrainRun.objects.get()
    assert (run.status, run.items_failed) == (RunStatus.RATE_LIMITED, 0)
    control = DrainControl.objects.get(name="halacha")
    assert control.backoff_kind == LimitKind.OVERLOADED
    assert before + timedelta(seconds=300) <= control.backoff_until
    assert control.backoff_until <= timezone.now() + timedelta(seconds=300)
    assert states() == {(0, "pending")}


def spend_cap_message(regain: datetime) -> str:
    return (
        "You have reached your specified API usage limits. You will regain access on "
        f"{regain:%Y-%m-%d} at 00:00 UTC."
    )


def test_spend_cap__every_drain_on_the_quota_paused_and_the_operators_emailed(
    api, settings, mailoutbox
):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"  # mailoutbox
    quota = AnthropicExtractor().quota_key()
    DrainControl.objects.create(name="metadata", quota_key=quota)  # the other drain on the key
    factories.make_decisions(3)
    regain = (timezone.now() + timedelta(days=3)).replace(hour=0, minute=0, second=0)
    api.enqueue(400, error_body("invalid_request_error", spend_cap_message(regain)))
    api.reply(EMPTY)  # must not be called

    drain()

    assert len(api.messages()) == 1
    assert DrainRun.objects.get().status == RunStatus.RATE_LIMITED
    controls = {c.name: c for c in DrainControl.objects.all()}
    assert {name: c.enabled for name, c in controls.items()} == {
        "halacha": False, "metadata": False
    }
    assert controls["halacha"].backoff_kind == LimitKind.SPEND_CAP
    # Paused until an operator acts: the "disabled" event names the runtime, and a note says why.
    for name in ("halacha", "metadata"):
        [disabled] = events(EventKind.DISABLED, name)
        assert disabled.actor == "runtime:manual" and "API spend limit" in disabled.message
        [paused] = events(EventKind.PAUSED, name)
        assert "manage.py drain_enabled halacha on" in paused.message
        assert "emailed to ops@example.org, oncall@example.org" in paused.message
    # One email, at once, to the digest's recipients.
    [mail] = mailoutbox
    assert mail.to == ["ops@example.org", "oncall@example.org"]
    assert mail.subject == "[drains] API spend limit: halacha, metadata paused"
    assert "regain access on" in mail.body and "drain_enabled metadata on" in mail.body

    # The next run makes no call: the drain stays paused however long the backoff lasts.
    DrainControl.objects.update(backoff_until=None)
    assert "disabled" in drain()
    assert len(api.messages()) == 1 and len(mailoutbox) == 1


def test_spend_cap_with_the_mail_server_down__the_pause_still_happens_and_says_so(
    api, settings
):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", port, 5
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    factories.make_decisions(1)
    regain = timezone.now() + timedelta(days=2)
    api.enqueue(400, error_body("invalid_request_error", spend_cap_message(regain)))

    drain()

    assert DrainControl.objects.get(name="halacha").enabled is False
    [paused] = events(EventKind.PAUSED)
    assert "the email to ops@example.org, oncall@example.org FAILED" in paused.message


# --- the fake CLI -----------------------------------------------------------------------------


@pytest.fixture
def cli(settings, monkeypatch, tmp_path):
    settings.HALACHA_EXTRACTOR = "claude-cli"
    settings.CLAUDE_CLI = str(FAKE)
    settings.CLAUDE_CONFIG_DIR = None
    settings.HALACHA_CLI_TIMEOUT_SECONDS = 20
    settings.HALACHA_CLI_EXTRA_ARGS = ""
    settings.DRAINS_OPERATOR_TZ = "Asia/Jerusalem"
    for name in [n for n in os.environ if n.startswith("FAKE_CLAUDE_")]:
        monkeypatch.delenv(name)
    log = tmp_path / "calls.log"
    monkeypatch.setenv("FAKE_CLAUDE_CALL_LOG", str(log))

    def behave(**env):
        for name, value in env.items():
            if value is None:
                monkeypatch.delenv(f"FAKE_CLAUDE_{name.upper()}", raising=False)
            else:
                monkeypatch.setenv(f"FAKE_CLAUDE_{name.upper()}", str(value))
        return log

    return behave


def calls(log) -> list[tuple[float, float]]:
    if not log.exists():
        return []
    return sorted(tuple(map(float, line.split()[:2])) for line in log.read_text().splitlines())


def test_session_limit__backoff_then_one_probe_then_full_concurrency(cli):
    factories.make_decisions(9)
    log = cli(stdout="5-hour limit reached · resets in 2h", exit=1)
    # The limit came two hours and a minute ago, so its reset passed a minute ago.
    with freeze_time(timezone.now() - timedelta(hours=2, minutes=1), tick=True):
        drain()
        limited = DrainRun.objects.get()
    assert limited.status == RunStatus.RATE_LIMITED and len(calls(log)) == 1
    control = DrainControl.objects.get(name="halacha")
    assert control.backoff_kind == LimitKind.SESSION
    assert control.backoff_until < timezone.now()

    log.unlink()
    cli(stdout=None, exit=None, result=EMPTY, hang=0.5)
    drain("--concurrency", "4")

    run = DrainRun.objects.exclude(pk=limited.pk).get()
    assert (run.status, run.items_done) == (RunStatus.SUCCEEDED, 9)
    made = calls(log)
    assert len(made) == 9
    first_end = made[0][1]
    # The probe: the first call alone; every other call started after it ended.
    assert all(start >= first_end for start, _ in made[1:])
    # Then full concurrency: calls overlapped, up to 4 at once.
    overlap = max(sum(1 for s, e in made if s <= start < e) for start, _ in made[1:])
    assert 2 <= overlap <= 4
    [probe] = events(EventKind.PROBE)
    assert probe.data["outcome"] == "ok"


def weekly_text(reset_local: datetime) -> str:
    hour = reset_local.strftime("%I%p").lstrip("0").lower()
    return f"You've hit your weekly limit · resets {reset_local:%b} {reset_local.day}, {hour} (Asia/Jerusalem)"


def test_weekly_limit_after_the_burst_deadline__the_burst_ends_at_once_with_its_note(cli):
    factories.make_decisions(3)
    deadline = (timezone.now() + timedelta(hours=2)).replace(second=0, microsecond=0)
    set_drain_burst(name="halacha", until=deadline, actor="op")
    reset_local = (timezone.now().astimezone(JERUSALEM) + timedelta(days=3)).replace(
        hour=9, minute=0, second=0, microsecond=0
    )
    log = cli(stdout=weekly_text(reset_local), exit=1)

    drain()

    assert len(calls(log)) == 1
    control = DrainControl.objects.get(name="halacha")
    assert control.backoff_kind == LimitKind.WEEKLY
    assert control.backoff_until == reset_local.astimezone(UTC)
    assert control.burst_until is None  # ended at once, not at the next supervisor tick
    [ended] = events(EventKind.BURST_ENDED)
    deadline_local = deadline.astimezone(JERUSALEM)
    assert ended.message == (
        f"weekly limit reached; it resets {reset_local:%a} 09:00 {reset_local:%Z}, after the burst "
        f"deadline {deadline_local:%a %H:%M %Z}: the burst ended early"
    )
    # It is a note on the page and in the API: an operator sees why the burst stopped.
    assert EventKind.BURST_ENDED in NOTE_KINDS


def test_weekly_limit_that_resets_before_the_deadline__the_burst_goes_on(cli):
    factories.make_decisions(2)
    deadline = timezone.now() + timedelta(hours=5)
    set_drain_burst(name="halacha", until=deadline, actor="op")
    cli(stdout="Weekly limit reached · resets in 2h", exit=1)

    drain()

    control = DrainControl.objects.get(name="halacha")
    assert control.backoff_kind == LimitKind.WEEKLY
    assert control.burst_until == deadline  # it resets in time: wait, then go on
    assert events(EventKind.BURST_ENDED) == []


def test_the_supervisor_ends_a_burst_that_a_weekly_backoff_in_force_outlasts():
    DrainControl.objects.create(name="halacha", quota_key="q")
    with freeze_time("2026-12-01T10:00:00Z"):  # a Tuesday; Jerusalem is UTC+2
        reset = datetime(2026, 12, 7, 7, 0, tzinfo=UTC)  # Mon 09:00 in Jerusalem
        record_backoff(
            drain="halacha", quota_key="q", reset_at=reset, reason="Opus weekly limit reached",
            kind=Kind(LimitKind.WEEKLY_MODEL, "opus"),
        )
        # An operator starts the default burst (Sat 18:00) while the weekly backoff is on.
        set_drain_burst(name="halacha", until=datetime(2026, 12, 5, 16, 0, tzinfo=UTC), actor="op")
        out = io.StringIO()
        call_command("supervise_drains", stdout=out)
    expected = (
        "weekly limit of opus reached; it resets Mon 09:00 IST, after the burst deadline Sat 18:00 IST: "
        "the burst ended early"
    )
    assert f"halacha  end_burst  {expected}" in out.getvalue()
    assert "start" not in out.getvalue().split("end_burst")[1]  # and nothing is started
    assert DrainControl.objects.get(name="halacha").burst_until is None
    assert [e.message for e in events(EventKind.BURST_ENDED)] == [expected]
    assert weekly_limit_message(
        kind=Kind(LimitKind.WEEKLY), reset_at=reset, burst_until=reset - timedelta(days=2)
    ).startswith("weekly limit reached;")
