"""Prompt caching in the ``anthropic`` backend: the real SDK over HTTP to the Messages API stub,
which reports cache writes and reads as the API does (keyed on the exact cached prefix)."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command

from drains.models import DrainRun
from halacha.extractors.anthropic_api import AnthropicExtractor
from halacha.extractors.prompts import METADATA_SYSTEM_PROMPT, SYSTEM_PROMPT, user_prompt
from halacha.extractors.protocol import ask_halachot, ask_metadata
from halacha.importer import import_paths
from halacha.models import CourtDecision
from tests.support.anthropic_stub import AnthropicStub, estimate_tokens
from tests.support.db import ROOT

CACHED = {"type": "text", "text": SYSTEM_PROMPT, "cache_control": {"type": "ephemeral"}}
PREFIX = estimate_tokens(SYSTEM_PROMPT)
EMPTY = json.dumps({"halachot": []})


def make_stub(monkeypatch, settings, **options) -> AnthropicStub:
    stub = AnthropicStub(prompt_cache=True, **options)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", stub.url)
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
    settings.ANTHROPIC_API_KEY = "sk-ant-test-key"
    settings.HALACHA_MODEL = "claude-sonnet-4-6"
    settings.HALACHA_PROMPT_CACHE = True
    return stub


@pytest.fixture
def stub(monkeypatch, settings):
    with make_stub(monkeypatch, settings) as running:
        yield running


def decision(n: int) -> CourtDecision:
    text = f"Case {n}. We hold that a promise made without consideration number {n} is not binding."
    return CourtDecision(external_id=f"d-{n}", text=text, language="en")


def extract(stub: AnthropicStub, *decisions: CourtDecision) -> list[dict]:
    for _ in decisions:
        stub.reply(EMPTY)
    return [ask_halachot(AnthropicExtractor(), d).usage for d in decisions]


def cache_figures(usage: dict) -> tuple[int, int]:
    return usage["cache_creation_input_tokens"], usage["cache_read_input_tokens"]


def test_the_system_prompt_is_sent_for_caching_and_later_calls_read_it(stub):
    decisions = [decision(n) for n in range(4)]
    usages = extract(stub, *decisions)

    for request in stub.messages():
        assert request.body["system"] == [CACHED]
    # The prompt is above the 1024-token minimum by the stub's estimate: it is cached at all.
    assert PREFIX >= 1024
    assert cache_figures(usages[0]) == (PREFIX, 0)  # the first call writes the cache
    for usage in usages[1:]:
        assert cache_figures(usage) == (0, PREFIX)  # every later call reads it
    for usage, d in zip(usages, decisions, strict=True):
        # only the decision is billed at the full input price
        assert usage["input_tokens"] == estimate_tokens(user_prompt(d))
    # what the extractor returns is what the stub reported for that request
    assert [cache_figures(r.usage) for r in stub.messages()] == [cache_figures(u) for u in usages]


def test_a_changed_prompt_misses_the_cache(stub, monkeypatch):
    first, second, third, fourth = (decision(n) for n in range(4))
    extract(stub, first)
    monkeypatch.setattr(
        "halacha.extractors.protocol.SYSTEM_PROMPT", SYSTEM_PROMPT.replace("careful", "exact")
    )
    (changed,) = extract(stub, second)
    assert cache_figures(changed) == (PREFIX, 0)  # a one-word change is a new prefix: written
    (again,) = extract(stub, third)
    assert cache_figures(again) == (0, PREFIX)
    monkeypatch.setattr("halacha.extractors.protocol.SYSTEM_PROMPT", SYSTEM_PROMPT)
    (back,) = extract(stub, fourth)
    assert cache_figures(back) == (0, PREFIX)  # the original prompt is still cached


def test_another_model_has_its_own_cache(stub, settings):
    extract(stub, decision(1))
    settings.HALACHA_MODEL = "claude-opus-4-1"
    (other,) = extract(stub, decision(2))
    assert cache_figures(other) == (PREFIX, 0)


def test_caching_off_sends_no_mark_and_pays_the_whole_prompt_every_time(stub, settings):
    settings.HALACHA_PROMPT_CACHE = False
    decisions = [decision(n) for n in range(3)]
    usages = extract(stub, *decisions)
    for request in stub.messages():
        assert request.body["system"] == [{"type": "text", "text": SYSTEM_PROMPT}]
    for usage, d in zip(usages, decisions, strict=True):
        assert cache_figures(usage) == (0, 0)
        assert usage["input_tokens"] == PREFIX + estimate_tokens(user_prompt(d))


def test_a_prompt_below_the_minimum_is_marked_but_never_cached(stub):
    # The metadata prompt (~260 tokens) is below Sonnet's 1024: marked, yet nothing is cached,
    # as the real API does; the stub must not report a saving the API would not give.
    assert estimate_tokens(METADATA_SYSTEM_PROMPT) < 1024
    reply = json.dumps(
        {"court": None, "case_number": None, "decided_on": None, "judges": [], "parties": []}
    )
    usages = []
    for n in range(2):
        stub.reply(reply)
        usages.append(ask_metadata(AnthropicExtractor(), decision(n)).usage)
    assert [r.body["system"][0]["cache_control"] for r in stub.messages()] == [
        {"type": "ephemeral"}
    ] * 2
    assert [cache_figures(u) for u in usages] == [(0, 0), (0, 0)]


def test_the_stubs_minimum_is_what_decides(monkeypatch, settings):
    # The same extraction prompt against a model whose minimum is above it (4096, Opus 4.5):
    # no write, no read, the whole prompt billed in full.
    with make_stub(monkeypatch, settings, min_cacheable_tokens=4096) as stub:
        usages = extract(stub, decision(1), decision(2))
    assert [cache_figures(u) for u in usages] == [(0, 0), (0, 0)]
    assert all(u["input_tokens"] > PREFIX for u in usages)


@pytest.mark.django_db(transaction=True)
def test_a_drain_run_records_the_cache_tokens_the_api_reported(stub, settings):
    settings.HALACHA_EXTRACTOR = "anthropic"
    import_paths([ROOT / "halacha" / "samples"])
    for _ in range(5):
        stub.reply(EMPTY)
    out = io.StringIO()
    call_command(
        "drain_halacha", "--trigger", "manual", "--max-items", "5", stdout=out, stderr=io.StringIO()
    )
    assert "5 done" in out.getvalue()

    reported = [r.usage for r in stub.messages()]
    assert len(reported) == 5
    run = DrainRun.objects.get()
    # The run's totals are the sums of what the API reported, cache reads included.
    for key in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"):
        assert getattr(run, key) == sum(u[key] for u in reported), key
    assert run.cache_creation_input_tokens == PREFIX
    assert run.cache_read_input_tokens == 4 * PREFIX
    assert run.output_tokens == 5 * 85
