"""A fault of the host or the service is charged to no item (issue 29).

Each fault is made for real: a CLI path that names no file, an API port nobody listens on, the
real pinned Claude CLI logged in as a subscriber (``CLAUDE_CODE_OAUTH_TOKEN``) whose login the
API stand-in refuses with a 401, the same 401 through the ``anthropic`` SDK, a storm of 5xx, and
the real CLI killed by SIGKILL while its call is in flight. For each: three runs (the second and
the third are the probes after the block, 1 then 2 minutes on a frozen clock) charge no attempt
and fail no item; the blocks double (1, 2, 4 minutes); the page and the API say ``blocked`` with
the reason and what to do; once the fault is mended, one supervisor pass and one run finish
every item.
"""

from __future__ import annotations

import io
import json
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import psutil
import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone
from freezegun import freeze_time

from drains.models import DrainControl, DrainEvent, DrainRun, EventKind, Item, StopReason
from drains.quota.kinds import LimitKind
from halacha.models import CourtDecision, Halacha
from tests.support.anthropic_stub import AnthropicStub, StubResponse, error_body, message_body
from tests.support.items import count, state, states
from tests.support.real_claude import use_real_cli

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

DECISIONS = 4
QUOTE = "We hold that a landlord may not cut off water to force a tenant out."
TEXT = f"Tel Aviv District Court\nCivil Appeal 4471-09-23\n\n{QUOTE} The appeal is dismissed."
GOOD = json.dumps({"halachot": [{"rule": "No water cut-offs.", "quote": QUOTE, "topics": []}]})
MODEL = "claude-sonnet-4-6"


@dataclass
class Fault:
    """A fault switched on for a stand-in that answers well once it is mended."""

    broken: Callable[[object], StubResponse] | None = None  # the stub's answer while broken
    on: bool = True

    def respond(self, request) -> StubResponse:
        if self.on and self.broken is not None:
            return self.broken(request)
        return StubResponse(200, message_body(GOOD, model=MODEL))


def _refused_login(request) -> StubResponse:
    return StubResponse(401, error_body("authentication_error", "Invalid bearer token"))


def _server_error(request) -> StubResponse:
    return StubResponse(503, error_body("api_error", "upstream connect error"))


def _kill_the_cli(request) -> StubResponse:
    """The call is in flight: SIGKILL the CLI that made it (a child of this test's process)."""
    for child in psutil.Process().children(recursive=True):
        if "claude" in " ".join(child.cmdline()):
            child.kill()
    return StubResponse(200, message_body(GOOD, model=MODEL), delay=2)


def _closed_port() -> str:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def _use_sdk(monkeypatch, settings, url: str) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", url)
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
    settings.HALACHA_EXTRACTOR = "anthropic"
    settings.ANTHROPIC_API_KEY = "sk-ant-test-key"
    settings.HALACHA_MODEL = MODEL


def _use_cli_as_subscriber(monkeypatch, settings, tmp_path, stub) -> None:
    use_real_cli(monkeypatch, settings, tmp_path, stub)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.setenv("CLAUDE_CODE_OAUTH_TOKEN", "test-oauth-token")
    settings.HALACHA_EXTRACTOR = "claude-cli"


# name -> (set the fault up, mend it, what the reason says, what to do)
CASES = ["missing-cli", "refused-connection", "cli-401", "sdk-401", "5xx-storm", "cli-sigkill"]


def _arrange(case, *, stub, fault, monkeypatch, settings, tmp_path):
    """Break the world for ``case``; return (mend, words of the reason, words of the advice)."""
    if case == "missing-cli":
        _use_cli_as_subscriber(monkeypatch, settings, tmp_path, stub)
        real = settings.CLAUDE_CLI
        settings.CLAUDE_CLI = str(tmp_path / "moved" / "claude")  # an upgrade moved it

        def mend():
            settings.CLAUDE_CLI = real
        return mend, "cannot run the Claude CLI", "set CLAUDE_CLI to its path"
    if case == "refused-connection":
        _use_sdk(monkeypatch, settings, _closed_port())
        return (lambda: monkeypatch.setenv("ANTHROPIC_BASE_URL", stub.url),
                "could not reach the Anthropic API", "check the network")
    fault.broken = {"cli-401": _refused_login, "sdk-401": _refused_login,
                    "5xx-storm": _server_error, "cli-sigkill": _kill_the_cli}[case]
    if case.startswith("cli-"):
        _use_cli_as_subscriber(monkeypatch, settings, tmp_path, stub)
    else:
        _use_sdk(monkeypatch, settings, stub.url)
    words = {"cli-401": ("HTTP 401", "claude setup-token"),
             "sdk-401": ("HTTP 401", "ANTHROPIC_API_KEY"),
             "5xx-storm": ("HTTP 503", "probes it again"),
             "cli-sigkill": ("killed by SIGKILL", "OOM killer")}[case]

    def mend():
        fault.on = False
    return (mend, *words)


def _drain() -> str:
    out = io.StringIO()
    call_command("drain_halacha", "--trigger", "manual", stdout=out, stderr=io.StringIO())
    return out.getvalue()


def _service(client: Client) -> dict:
    response = client.get("/api/operations/")
    assert response.status_code == 200, response.content[:500]
    return next(s for s in response.json()["services"] if s["name"] == "halacha")


@pytest.mark.parametrize("case", CASES)
def test_a_host_fault_blocks_the_drain_charges_no_item_and_a_probe_finishes_after_the_mend(
    case, monkeypatch, settings, tmp_path, admin_user
):
    settings.HALACHA_CLI_TIMEOUT_SECONDS = 60
    for n in range(DECISIONS):
        CourtDecision.objects.create(external_id=f"hf-{n}", text=TEXT, language="en")
    fault = Fault()
    client = Client()
    client.force_login(admin_user)
    with AnthropicStub(responder=fault.respond) as stub:
        mend, reason_words, advice_words = _arrange(
            case, stub=stub, fault=fault, monkeypatch=monkeypatch, settings=settings,
            tmp_path=tmp_path)
        start = timezone.now()
        with freeze_time(start, tick=True) as clock:
            # The first run meets the fault; the next two are its probes, each after the block.
            for minutes in (0, 2, 5):
                clock.move_to(start + timedelta(minutes=minutes))
                _drain()
            assert states() == {(0, "pending")} and count("halacha") == DECISIONS
            runs = list(DrainRun.objects.filter(drain="halacha").order_by("id"))
            assert [(r.stop_reason, r.items_failed) for r in runs] == [
                (StopReason.BLOCKED, 0)] * 3, [(r.stop_reason, r.error) for r in runs]
            # Blocked, on a doubling interval: 1, 2, then 4 minutes.
            blocks = DrainEvent.objects.filter(
                drain="halacha", kind=EventKind.BACKOFF, data__kind=LimitKind.HOST_FAULT.value
            ).order_by("id")
            lengths = [
                round((datetime.fromisoformat(e.data["until"]) - e.at).total_seconds() / 60)
                for e in blocks]
            assert lengths == [1, 2, 4]
            control = DrainControl.objects.get(name="halacha")
            assert control.backoff_kind == LimitKind.HOST_FAULT
            assert reason_words in control.backoff_reason
            # Seen on the API and the page, with the reason and what to do.
            service = _service(client)
            assert service["state"] == "blocked", service
            assert reason_words in service["reason"] and advice_words in service["reason"]
            page = client.get("/operations").content.decode()
            assert "state-blocked" in page and reason_words in page

            mend()
            clock.move_to(start + timedelta(minutes=10))
            call_command("supervise_drains", stdout=io.StringIO(), stderr=io.StringIO())
            out = _drain()
        assert count("halacha", status="done") == DECISIONS, out
        assert Halacha.objects.count() == DECISIONS
        assert _service(client)["state"] != "blocked"


# --- the breaker, and an item's own fault -------------------------------------------------------


def _sdk_stub_answering(monkeypatch, settings, answer: Callable[[str], str]) -> AnthropicStub:
    """The SDK against a stand-in that answers each decision's text with ``answer(text)``."""
    def respond(request) -> StubResponse:
        text = json.dumps(request.body["messages"], ensure_ascii=False)
        return StubResponse(200, message_body(answer(text), model=MODEL))
    stub = AnthropicStub(responder=respond)
    _use_sdk(monkeypatch, settings, stub.url)
    return stub


def test_the_breaker__garbage_for_every_item_stops_the_run_after_five_and_blocks_the_drain(
    monkeypatch, settings, admin_user
):
    for n in range(8):
        CourtDecision.objects.create(external_id=f"bk-{n}", text=TEXT, language="en")
    with _sdk_stub_answering(monkeypatch, settings, lambda text: "Sorry, I can't do JSON.") as stub:
        _drain()
        assert len(stub.messages()) == 5  # the sixth item was never called
    run = DrainRun.objects.get(drain="halacha")
    assert (run.stop_reason, run.items_failed, run.items_done) == (StopReason.BLOCKED, 5, 0)
    assert count("halacha", attempts=1) == 5  # those five stay charged: they were paid for
    assert count("halacha", attempts=0, status="pending") == 3
    control = DrainControl.objects.get(name="halacha")
    assert control.backoff_kind == LimitKind.HOST_FAULT
    assert "5 items in a row failed with the same error" in control.backoff_reason
    client = Client()
    client.force_login(admin_user)
    assert _service(client)["state"] == "blocked"


def test_an_items_own_fault_among_good_items_is_charged_to_that_item_only(monkeypatch, settings):
    for n in range(5):
        text = TEXT + (" BROKEN-REPLY" if n == 2 else "")
        CourtDecision.objects.create(external_id=f"own-{n}", text=text, language="en")
    answer = lambda text: "not json at all" if "BROKEN-REPLY" in text else GOOD  # noqa: E731
    with _sdk_stub_answering(monkeypatch, settings, answer) as stub:
        _drain()
        assert len(stub.messages()) == 5
    run = DrainRun.objects.get(drain="halacha")
    assert (run.stop_reason, run.items_done, run.items_failed) == (StopReason.BACKLOG_EMPTY, 4, 1)
    broken = CourtDecision.objects.get(external_id="own-2")
    assert state("halacha", broken)[1] == 1 and state("halacha", broken)[2]
    assert count("halacha", status="done") == 4
    assert not DrainControl.objects.filter(name="halacha", backoff_until__isnull=False).exists()


def test_an_operator_unblocks_by_hand_and_the_next_run_probes(monkeypatch, settings):
    for n in range(3):
        CourtDecision.objects.create(external_id=f"ub-{n}", text=TEXT, language="en")
    fault = Fault(broken=_server_error)
    with AnthropicStub(responder=fault.respond) as stub:
        _use_sdk(monkeypatch, settings, stub.url)
        from halacha.extractors import get_extractor

        # the metadata drain draws on the same API key: the block is written on both
        DrainControl.objects.create(name="metadata", quota_key=get_extractor().quota_key())
        _drain()
        assert set(DrainControl.objects.values_list("name", "backoff_kind")) == {
            ("halacha", LimitKind.HOST_FAULT), ("metadata", LimitKind.HOST_FAULT)}
        assert "blocked" in _drain()  # still blocked: this run makes no call
        assert len(stub.messages()) == 1
        fault.on = False
        out = io.StringIO()
        call_command("retry_now", "halacha", "--actor", "ops:dana", stdout=out)
        assert "backoff until" in out.getvalue() and "probes" in out.getvalue()
        # lifted on every drain of the quota, not only on the one that observed it
        assert not DrainControl.objects.filter(backoff_until__isnull=False).exists()
        _drain()
    assert count("halacha", status="done") == 3
    event = DrainEvent.objects.get(drain="halacha", kind=EventKind.RETRY_NOW)
    assert event.actor == "ops:dana"
    with pytest.raises(CommandError, match="no backoff to clear"):
        call_command("retry_now", "halacha")


def test_blocked_is_said_by_schedule_the_digest_and_metrics(monkeypatch, settings):
    settings.DRAINS_METRICS_ALLOWED_IPS = ["127.0.0.1"]
    CourtDecision.objects.create(external_id="seen-1", text=TEXT, language="en")
    with AnthropicStub(responder=Fault(broken=_server_error).respond) as stub:
        _use_sdk(monkeypatch, settings, stub.url)
        _drain()
    out = io.StringIO()
    call_command("schedule", stdout=out)
    row = next(line for line in out.getvalue().splitlines() if line.startswith("drain_halacha "))
    assert "stopped: blocked until" in row and "HTTP 503" in row, row
    from operations.digest import build_digest, render_digest

    _subject, body = render_digest(build_digest())
    assert "BLOCKED now: the Anthropic API failed with HTTP 503" in body, body
    assert "blocked:            1 run stopped by a host fault or the breaker" in body, body
    metrics = Client(REMOTE_ADDR="127.0.0.1").get("/metrics").content.decode()
    assert 'drains_service_state{drain="halacha",state="blocked"} 1.0' in metrics


def test_the_breakers_block_is_not_lifted_by_a_probe_that_fails_the_same_way(monkeypatch, settings):
    for n in range(12):
        CourtDecision.objects.create(external_id=f"bp-{n}", text=TEXT, language="en")
    with _sdk_stub_answering(monkeypatch, settings, lambda text: "Sorry, no JSON.") as stub:
        start = timezone.now()
        with freeze_time(start, tick=True) as clock:
            _drain()  # five failures: the breaker blocks for a minute
            clock.move_to(start + timedelta(minutes=2))
            _drain()  # the probe fails the same way: blocked again, for twice as long
            calls = len(stub.messages())
    assert calls == 6  # the probe was one call, alone (the first item again)
    attempts = sorted(Item.objects.filter(drain="halacha").values_list("attempts", flat=True))
    assert attempts == [0] * 7 + [1] * 4 + [2]
    blocks = DrainEvent.objects.filter(
        drain="halacha", kind=EventKind.BACKOFF, data__breaker=True).order_by("id")
    lengths = [round((datetime.fromisoformat(e.data["until"]) - e.at).total_seconds() / 60)
               for e in blocks]
    assert lengths == [1, 2]
    probe = DrainEvent.objects.filter(drain="halacha", kind=EventKind.PROBE).get()
    assert probe.data["outcome"] == "refused"


def test_a_fault_only_one_item_meets_is_charged_to_it_once_other_items_went_through(
    monkeypatch, settings
):
    """A request the service always answers 5xx (or a decision that always times out) is no
    host's fault: the probe after its block skips it, the others go through, and when it meets
    the fault again it is charged, so it cannot block the drain forever."""
    poison = CourtDecision.objects.create(external_id="pp-0", text=TEXT + " POISON", language="en")
    for n in range(1, 4):
        CourtDecision.objects.create(external_id=f"pp-{n}", text=TEXT, language="en")

    def respond(request) -> StubResponse:
        if "POISON" in json.dumps(request.body["messages"]):
            return _server_error(request)
        return StubResponse(200, message_body(GOOD, model=MODEL))

    with AnthropicStub(responder=respond) as stub:
        _use_sdk(monkeypatch, settings, stub.url)
        start = timezone.now()
        with freeze_time(start, tick=True) as clock:
            _drain()  # the poisoned decision first: blocked for a minute, nothing charged
            assert (state("halacha", poison)[1], DrainRun.objects.get().stop_reason) == (
                0, StopReason.BLOCKED)
            clock.move_to(start + timedelta(minutes=2))
            # The probe takes another decision; once it went through, the poisoned one meets the
            # fault again in the same run, now the item's own: charged, and the run goes on.
            _drain()
    assert count("halacha", status="done") == 3
    _, attempts, last_error = state("halacha", poison)
    assert attempts == 1 and "while other items went through" in last_error
    assert DrainEvent.objects.filter(drain="halacha", kind=EventKind.BACKOFF).count() == 1
    assert DrainRun.objects.order_by("-id").first().stop_reason != StopReason.BLOCKED
