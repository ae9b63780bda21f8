"""The ``anthropic`` backend with the real SDK against a local HTTP stub of the Messages API."""

from __future__ import annotations

import hashlib
import json
import socket
from datetime import UTC, date, datetime, timedelta

import pytest
from freezegun import freeze_time

from drains.quota.kinds import Kind, LimitKind
from drains.quota.resets import RateLimited
from halacha.extractors import get_extractor
from halacha.extractors.anthropic_api import AnthropicExtractor
from halacha.extractors.base import ExtractionError, HostFault
from halacha.extractors.prompts import (
    HALACHA_SCHEMA,
    METADATA_SCHEMA,
    METADATA_SYSTEM_PROMPT,
    SYSTEM_PROMPT,
)
from halacha.extractors.protocol import ask_halachot, ask_metadata
from halacha.models import CourtDecision
from tests.support.anthropic_stub import AnthropicStub, error_body, message_body

TEXT = (
    "Supreme Court\nCase No. CA 1/24\n\n"
    "The landlord kept the deposit. We hold that a landlord who keeps a deposit must show the "
    "damage it covers. The appeal is allowed."
)
QUOTE = "We hold that a landlord who keeps a deposit must show the damage it covers."
RULE = "A landlord who keeps a deposit must show the damage it covers."
NOW = datetime(2026, 3, 20, 10, 0, tzinfo=UTC)


@pytest.fixture
def decision():
    return CourtDecision(external_id="sc-1", text=TEXT, language="en", court="Supreme Court")


@pytest.fixture
def stub(monkeypatch, settings):
    with AnthropicStub() as running:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", running.url)
        monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
        settings.ANTHROPIC_API_KEY = "sk-ant-test-key"
        settings.HALACHA_MODEL = "claude-sonnet-4-6"
        settings.HALACHA_MAX_TOKENS = 2048
        settings.DRAINS_FALLBACK_BACKOFF_SECONDS = 900
        yield running


def halachot_json(*items) -> str:
    return json.dumps({"halachot": [dict(rule=r, quote=q, topics=t) for r, q, t in items]})


def test_good_reply(stub, decision):
    stub.reply(halachot_json((RULE, QUOTE, ["property"])))
    result = ask_halachot(AnthropicExtractor(), decision)

    assert [(h.rule, h.quote, h.topics) for h in result.halachot] == [(RULE, QUOTE, ["property"])]
    assert result.rejected == 0
    tokens = {
        "input_tokens": 1200,
        "output_tokens": 85,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 1100,
    }
    # The run sums model_usage, so it can say which model the quota was spent on.
    assert result.usage == {
        **tokens,
        # … and how its quotes were grounded (halacha/grounding.py), summed per run the same way
        "model_usage": {"claude-sonnet-4-5-20250929": {"calls": 1, **tokens, "quotes_exact": 1}},
    }
    assert (result.extractor, result.model) == ("anthropic", "claude-sonnet-4-5-20250929")
    assert json.loads(json.dumps(result.raw))["id"] == "msg_stub_01"

    (request,) = stub.requests  # exactly one HTTP request
    assert request.path == "/v1/messages"
    assert "sk-ant-test-key" in (
        request.headers.get("x-api-key", "") + request.headers.get("authorization", "")
    )
    body = request.body
    assert body["model"] == "claude-sonnet-4-6"
    assert body["max_tokens"] == 2048
    assert body["system"] == [
        {"type": "text", "text": SYSTEM_PROMPT, "cache_control": {"type": "ephemeral"}}
    ]
    assert body["messages"][0]["role"] == "user"
    assert f"<decision>\n{TEXT}\n</decision>" in body["messages"][0]["content"]
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": HALACHA_SCHEMA}}


def test_fenced_reply_is_accepted(stub, decision):
    stub.reply("```json\n" + halachot_json((RULE, QUOTE, [])) + "\n```")
    assert len(ask_halachot(AnthropicExtractor(), decision).halachot) == 1


def test_fabricated_quote_is_rejected_and_counted(stub, decision):
    stub.reply(
        halachot_json(
            (RULE, QUOTE, ["property"]),
            ("Deposits are always forfeit.", "We hold that deposits are always forfeit.", []),
        )
    )
    result = ask_halachot(AnthropicExtractor(), decision)
    assert [h.rule for h in result.halachot] == [RULE]
    assert result.rejected == 1
    assert "does not occur in the decision, verbatim or by the grounding ladder" in result.problems[0]
    assert len(stub.requests) == 1


def test_malformed_json_is_an_error_that_keeps_what_was_paid_for(stub, decision):
    stub.reply('{"halachot": [{"rule": "unterminated')
    with pytest.raises(ExtractionError) as info:
        ask_halachot(AnthropicExtractor(), decision)
    assert not isinstance(info.value, RateLimited)
    assert "not JSON" in str(info.value)
    assert info.value.usage["input_tokens"] == 1200  # the call was paid for
    assert info.value.raw["content"][0]["text"].startswith('{"halachot"')
    assert len(stub.requests) == 1


def test_reply_cut_off_at_max_tokens(stub, decision):
    stub.reply('{"halachot": [', stop_reason="max_tokens", output_tokens=2048)
    with pytest.raises(ExtractionError, match="HALACHA_MAX_TOKENS=2048") as info:
        ask_halachot(AnthropicExtractor(), decision)
    assert info.value.usage["output_tokens"] == 2048


RATE_LIMIT_BODY = error_body(
    "rate_limit_error",
    "This request would exceed your account's rate limit. Please try again later.",
)


@pytest.mark.parametrize(
    ("headers", "expected", "trusted"),
    [
        # retry-after wins over the reset headers
        (
            {
                "retry-after": "30",
                "anthropic-ratelimit-tokens-remaining": "0",
                "anthropic-ratelimit-tokens-reset": "2026-03-20T10:05:00Z",
            },
            NOW + timedelta(seconds=30),
            True,
        ),
        # without retry-after: the latest reset among the exhausted limits
        (
            {
                "anthropic-ratelimit-requests-remaining": "0",
                "anthropic-ratelimit-requests-reset": "2026-03-20T10:01:00Z",
                "anthropic-ratelimit-input-tokens-remaining": "0",
                "anthropic-ratelimit-input-tokens-reset": "2026-03-20T10:02:30Z",
                "anthropic-ratelimit-output-tokens-remaining": "7000",
                "anthropic-ratelimit-output-tokens-reset": "2026-03-20T10:09:00Z",
            },
            datetime(2026, 3, 20, 10, 2, 30, tzinfo=UTC),
            True,
        ),
        (
            {"retry-after": "Fri, 20 Mar 2026 10:10:00 GMT"},
            datetime(2026, 3, 20, 10, 10, tzinfo=UTC),
            True,
        ),
        ({}, NOW + timedelta(seconds=900), False),
    ],
    ids=["retry-after", "exhausted-resets", "http-date", "no-headers-fallback"],
)
def test_429_becomes_rate_limited_at_the_right_time(stub, decision, headers, expected, trusted):
    stub.enqueue(429, RATE_LIMIT_BODY, headers)
    with freeze_time(NOW), pytest.raises(RateLimited) as info:
        ask_halachot(AnthropicExtractor(), decision)
    assert info.value.reset_at == expected
    assert info.value.trusted is trusted
    assert info.value.message.startswith("HTTP 429 rate_limit_error This request would exceed")
    for name, value in headers.items():
        assert f"{name}: {value}" in info.value.message  # the raw signal is kept
    assert len(stub.requests) == 1  # the SDK did not retry


def test_spend_limit_400_is_a_rate_limit(stub, decision):
    stub.enqueue(
        400,
        error_body(
            "invalid_request_error",
            "You have reached your specified API usage limits. You will regain access on "
            "2026-04-01 at 00:00 UTC.",
        ),
    )
    with freeze_time(NOW), pytest.raises(RateLimited) as info:
        ask_halachot(AnthropicExtractor(), decision)
    assert info.value.reset_at == datetime(2026, 4, 1, tzinfo=UTC)
    assert len(stub.requests) == 1


def test_a_bad_request_is_the_items_extraction_error(stub, decision):
    stub.enqueue(400, error_body("invalid_request_error", "max_tokens: too large"),
                 {"retry-after": "1"})
    with pytest.raises(ExtractionError) as info:
        ask_halachot(AnthropicExtractor(), decision)
    assert not isinstance(info.value, RateLimited)
    assert "HTTP 400" in str(info.value) and "too large" in str(info.value)
    assert "req_stub" in str(info.value)
    assert len(stub.requests) == 1  # not retried, even with retry-after


@pytest.mark.parametrize(
    ("status", "body", "words", "advice"),
    [
        (500, error_body("api_error", "Internal server error"), ["HTTP 500", "api_error"],
         "probes it again"),
        (503, error_body("api_error", "Service unavailable"), ["HTTP 503"], "probes it again"),
        (401, error_body("authentication_error", "invalid x-api-key"), ["HTTP 401"],
         "ANTHROPIC_API_KEY"),
        (403, error_body("permission_error", "no access"), ["HTTP 403"], "ANTHROPIC_API_KEY"),
    ],
    ids=["500", "503", "401", "403"],
)
def test_refused_credentials_and_the_services_5xx_are_host_faults(
    stub, decision, status, body, words, advice
):
    stub.enqueue(status, body, {"retry-after": "1"})
    with pytest.raises(HostFault) as info:
        ask_halachot(AnthropicExtractor(), decision)
    assert info.value.kind == Kind(LimitKind.HOST_FAULT)
    for word in words:
        assert word in info.value.fault
    assert "req_stub" in info.value.fault
    assert advice in info.value.advice
    assert len(stub.requests) == 1  # not retried, even with retry-after


def test_529__overloaded_is_no_quota_limit_but_its_own_kind_for_the_runtime_to_retry(
    stub, decision, settings
):
    settings.DRAINS_OVERLOAD_BACKOFF_SECONDS = 300
    stub.enqueue(529, error_body("overloaded_error", "Overloaded"), {"retry-after": "1"})
    with freeze_time(NOW), pytest.raises(RateLimited) as info:
        ask_halachot(AnthropicExtractor(), decision)
    assert info.value.kind == Kind(LimitKind.OVERLOADED)
    # The short backoff the runtime takes only if the retries inside the run fail too.
    assert info.value.reset_at == NOW + timedelta(seconds=300)
    assert "HTTP 529" in info.value.message and "overloaded_error" in info.value.message
    assert len(stub.requests) == 1  # the SDK does not retry; the runtime does


def test_settings_are_read_at_call_time(stub, decision, settings):
    extractor = AnthropicExtractor()
    stub.reply(halachot_json())
    stub.reply(halachot_json())
    ask_halachot(extractor, decision)
    settings.HALACHA_MODEL = "claude-opus-4-1"
    settings.ANTHROPIC_API_KEY = "sk-ant-other-key"
    ask_halachot(extractor, decision)
    assert [r.body["model"] for r in stub.requests] == ["claude-sonnet-4-6", "claude-opus-4-1"]
    second = stub.requests[1].headers
    assert "sk-ant-other-key" in (second.get("x-api-key", "") + second.get("authorization", ""))


def test_missing_key_is_a_host_fault_without_a_request(stub, decision, settings):
    settings.ANTHROPIC_API_KEY = None
    with pytest.raises(HostFault, match="ANTHROPIC_API_KEY is not set") as info:
        ask_halachot(AnthropicExtractor(), decision)
    assert "HALACHA_EXTRACTOR=offline" in info.value.advice
    assert stub.requests == []


def test_unreachable_api_is_a_host_fault(monkeypatch, settings, decision):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("ANTHROPIC_BASE_URL", f"http://127.0.0.1:{port}")
    settings.ANTHROPIC_API_KEY = "sk-ant-test-key"
    with pytest.raises(HostFault, match="could not reach the Anthropic API") as info:
        ask_halachot(AnthropicExtractor(), decision)
    assert "Connection refused" in info.value.fault and "network" in info.value.advice


def test_quota_key(settings):
    settings.ANTHROPIC_API_KEY = "sk-ant-test-key"
    key = AnthropicExtractor().quota_key()
    assert key == "anthropic:" + hashlib.sha256(b"sk-ant-test-key").hexdigest()[:12]
    assert "test-key" not in key
    settings.ANTHROPIC_API_KEY = "sk-ant-other"
    assert AnthropicExtractor().quota_key() != key
    settings.ANTHROPIC_API_KEY = None
    assert AnthropicExtractor().quota_key() == "anthropic:no-key"
    assert isinstance(get_extractor("anthropic"), AnthropicExtractor)


def test_extract_metadata(stub, decision):
    stub.reply(
        json.dumps(
            {
                "court": "Supreme Court",
                "case_number": "CA 1/24",
                "decided_on": "2024-03-01",
                "judges": ["Miriam Adler"],
                "parties": ["Dana Shapiro", "Eli Ben-Ami"],
            }
        ),
        input_tokens=300,
    )
    meta = ask_metadata(AnthropicExtractor(), decision)
    assert (meta.court, meta.case_number, meta.decided_on) == (
        "Supreme Court",
        "CA 1/24",
        date(2024, 3, 1),
    )
    assert meta.judges == ["Miriam Adler"] and meta.parties == ["Dana Shapiro", "Eli Ben-Ami"]
    assert meta.usage["input_tokens"] == 300
    (request,) = stub.requests
    assert request.body["system"][0]["text"] == METADATA_SYSTEM_PROMPT
    assert request.body["output_config"]["format"]["schema"] == METADATA_SCHEMA


def test_extract_metadata__bad_reply(stub, decision):
    stub.reply('{"court": "X", "decided_on": "March 2024", "judges": [], "parties": []}')
    with pytest.raises(ExtractionError, match="not a YYYY-MM-DD date") as info:
        ask_metadata(AnthropicExtractor(), decision)
    assert info.value.usage["input_tokens"] == 1200


def test_deprecated_model_is_logged_not_fatal(stub, decision, settings, caplog):
    settings.HALACHA_MODEL = "claude-sonnet-4-5"  # end-of-life 2026-11-30 in the SDK's table
    stub.reply(halachot_json((RULE, QUOTE, [])))
    with caplog.at_level("WARNING", logger="halacha.extractors.anthropic_api"):
        result = ask_halachot(AnthropicExtractor(), decision)
    assert len(result.halachot) == 1
    assert any("claude-sonnet-4-5' is deprecated" in r.getMessage() for r in caplog.records)


# --- the subscription's windows from the unified headers ---------------------------------------


def unified(five: str, week: str, *, status="allowed", claim="five_hour", overage="rejected"):
    five_reset = int((datetime.now(UTC) + timedelta(hours=3)).timestamp())
    week_reset = int((datetime.now(UTC) + timedelta(days=3)).timestamp())
    return {
        "anthropic-ratelimit-unified-status": status,
        "anthropic-ratelimit-unified-reset": str(week_reset if claim == "seven_day" else five_reset),
        "anthropic-ratelimit-unified-representative-claim": claim,
        "anthropic-ratelimit-unified-5h-utilization": five,
        "anthropic-ratelimit-unified-5h-reset": str(five_reset),
        "anthropic-ratelimit-unified-7d-utilization": week,
        "anthropic-ratelimit-unified-7d-reset": str(week_reset),
        "anthropic-ratelimit-unified-overage-status": overage,
    }, five_reset, week_reset


def test_unified_headers_on_an_answer(stub, decision):
    headers, five_reset, week_reset = unified("0.42", "0.3")
    stub.enqueue(200, message_body(halachot_json((RULE, QUOTE, ["property"]))), headers)
    result = ask_halachot(AnthropicExtractor(), decision)
    assert [h.quote for h in result.halachot] == [QUOTE]
    windows = {r.window: r for r in result.quota.windows}
    assert windows["five_hour"].utilization == 0.42
    assert windows["five_hour"].resets_at == datetime.fromtimestamp(five_reset, UTC)
    assert windows["seven_day"].utilization == 0.3
    assert windows["seven_day"].resets_at == datetime.fromtimestamp(week_reset, UTC)
    assert result.quota.source == "api" and not result.quota.using_overage


def test_unified_headers_on_a_refusal_and_extra_usage(stub, decision):
    headers, _, week_reset = unified("0.6", "1", status="rejected", claim="seven_day",
                                     overage="allowed")
    stub.enqueue(429, error_body("rate_limit_error", "rate limited"), headers)
    with pytest.raises(RateLimited) as info:
        ask_halachot(AnthropicExtractor(), decision)
    quota = info.value.quota
    assert {r.window: r.utilization for r in quota.windows} == {"five_hour": 0.6, "seven_day": 1.0}
    assert quota.using_overage  # the plan refused, the overage allowed: extra usage is spent
    assert info.value.reset_at == datetime.fromtimestamp(week_reset, UTC)


def test_unified_headers_on_a_failed_reply_and_none_for_an_api_key(stub, decision):
    headers, _, _ = unified("0.5", "0.5")
    stub.enqueue(200, message_body("{}", stop_reason="max_tokens"), headers)
    with pytest.raises(ExtractionError) as info:
        ask_halachot(AnthropicExtractor(), decision)
    assert len(info.value.quota.windows) == 2  # paid, unusable: the reading is still kept
    stub.reply(halachot_json())  # an API-key account: no unified header at all
    assert not ask_halachot(AnthropicExtractor(), decision).quota
