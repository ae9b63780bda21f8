"""``manage.py evaluate`` against the API stand-in, through the ``anthropic`` SDK and through the
real pinned CLI as a subscriber: three models with scripted replies of known quality over the
gold set (one exact and complete, one with typographic variants, one missing half the
halachot), each model spending its own share of the week, as the stand-in's quota model
reports it in the unified headers the backends read."""

from __future__ import annotations

import io
import json
import math
import re
import time

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from drains.models import DrainControl, DrainRun, Item
from halacha import evaluation
from halacha import gold as goldset
from halacha.extractors.anthropic_api import AnthropicExtractor
from halacha.grounding import Tier, ground
from halacha.models import CourtDecision, Evaluation, Halacha
from tests.support.anthropic_stub import (
    AnthropicStub,
    QuotaModel,
    StubResponse,
    error_body,
    message_body,
)
from tests.support.real_claude import use_real_cli

pytestmark = pytest.mark.django_db(transaction=True)

LIMIT = 6  # gold decisions per evaluation: three Hebrew, three English
WEEK_PER_CALL = 0.004
# Each model's price in calls: the exact one costs the most, the one that misses half the least.
MODELS = {"claude-opus-4-6": 1.0, "claude-sonnet-4-6": 0.5, "claude-haiku-4-5": 0.25}
TYPOGRAPHY = str.maketrans({"\n": " ", "\u00a0": " ", "״": '"', "׳": "'", "־": "-",
                            "“": '"', "”": '"', "’": "'", "—": "-", "–": "-"})


def _variant(quote: str) -> str:
    return quote.translate(TYPOGRAPHY)


def _reply(model: str, decision: goldset.GoldDecision) -> str:
    if "opus" in model:  # exact and complete
        return goldset.reply_for(decision)
    if "sonnet" in model:  # every quote retyped: line breaks, gershayim, maqaf, quotes, dashes
        return goldset.reply_for(decision, [_variant(h.quote) for h in decision.halachot])
    kept = decision.halachot[::2]  # haiku: every other halacha, half of them missing
    return json.dumps({"halachot": [{"rule": h.rule, "quote": h.quote, "topics": []}
                                    for h in kept]}, ensure_ascii=False)


@pytest.fixture
def gold():
    return {d.id: d for d in evaluation.interleaved(evaluation.gold_set())[:LIMIT]}


@pytest.fixture
def stand_in(gold):
    week = QuotaModel(week=0.20, week_per_call=WEEK_PER_CALL, session_per_call=0.01,
                      weight=lambda body: MODELS[body["model"]])

    def respond(request) -> StubResponse:
        prompt = json.dumps(request.body["messages"], ensure_ascii=False)
        (external_id,) = re.findall(r"external id: (gold-[a-z]{2}-\d+)", prompt)
        model = request.body["model"]
        return StubResponse(200, message_body(_reply(model, gold[external_id]), model=model))

    with AnthropicStub(quota=week, responder=respond) as stub:
        yield stub


def _expected(gold, model):
    """(found, predicted, gold halachot, the tiers) the script above must score."""
    found = predicted = total = 0
    tiers: dict[str, int] = {}
    for decision in gold.values():
        total += len(decision.halachot)
        kept = decision.halachot[::2] if "haiku" in model else decision.halachot
        found += len(kept)
        predicted += len(kept)
        for h in kept:
            quote = _variant(h.quote) if "sonnet" in model else h.quote
            tier = ground(quote, decision.text).tier.label
            tiers[tier] = tiers.get(tier, 0) + 1
    return found, predicted, total, tiers


def _evaluate(*args: str) -> str:
    out = io.StringIO()
    call_command("evaluate", "--limit", str(LIMIT), *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def _world():
    """What an evaluation must leave as it was: the backlog, its items, the halachot."""
    return (list(CourtDecision.objects.values_list("pk", "text_sha256")),
            list(Item.objects.exclude(drain="evaluate").values_list(
                "drain", "ref", "status", "attempts")),
            Halacha.objects.count())


def _check(gold, stub_model, *, backend):
    for model, price in MODELS.items():
        row = Evaluation.objects.get(model=model, backend=backend)
        found, predicted, total, tiers = _expected(gold, model)
        assert (row.true_positives, row.predicted, row.gold) == (found, predicted, total), model
        assert (row.answered, row.rejected, row.decisions) == (LIMIT, 0, LIMIT)
        assert row.tiers == tiers, model
        assert row.week_moved == pytest.approx(LIMIT * WEEK_PER_CALL * price, abs=2e-3), model
        assert row.five_hour_moved == pytest.approx(LIMIT * 0.01 * price, abs=2e-3), model
        assert row.input_tokens == LIMIT * 1200 and row.output_tokens == LIMIT * 85
    opus, sonnet, haiku = (Evaluation.objects.get(model=m, backend=backend) for m in MODELS)
    assert opus.tiers == {"exact": opus.gold}  # exact and complete: precision = recall = 1
    assert "exact" not in sonnet.tiers  # every quote grounded by a later tier, none lost
    assert sonnet.true_positives == sonnet.gold
    assert haiku.true_positives == sum(math.ceil(len(d.halachot) / 2) for d in gold.values())
    assert len(stub_model.calls) == LIMIT * len(MODELS) and all(c.answered for c in stub_model.calls)


def _compare_marks_the_best():
    rows = {r.evaluation.model: r for r in evaluation.compare()}
    # Found per 1 % of the week: opus all at 1.0, sonnet all at 0.5, haiku half at 0.25.
    assert [m for m, r in rows.items() if r.best] == ["claude-haiku-4-5"]
    haiku, sonnet = rows["claude-haiku-4-5"], rows["claude-sonnet-4-6"]
    assert haiku.found_per_pct_week > sonnet.found_per_pct_week > rows[
        "claude-opus-4-6"].found_per_pct_week
    assert haiku.score.recall < 0.75 and sonnet.score.f1 == 1.0
    table = _compare_table()
    assert re.search(r"^\* +anthropic:claude-haiku-4-5|^\* +claude-cli:claude-haiku-4-5", table,
                     re.M), table


def _compare_table() -> str:
    out = io.StringIO()
    call_command("evaluate", "--compare", stdout=out)
    return out.getvalue()


def test_evaluate_through_the_sdk_scores_each_model_and_reads_what_it_used_of_the_week(
    gold, stand_in, monkeypatch, settings
):
    monkeypatch.setenv("ANTHROPIC_BASE_URL", stand_in.url)
    settings.HALACHA_EXTRACTOR = "anthropic"
    settings.ANTHROPIC_API_KEY = "sk-ant-test-key"
    CourtDecision.objects.create(external_id="backlog-1", text="We hold that water flows.")
    # A reading seen a day ago (the week at 10 %; the account is at 20 % now): not the first
    # evaluation's "before", or the owner's use since would be charged to it.
    _stale_reading(AnthropicExtractor().quota_key(), week=0.10)
    before = _world()

    for model in MODELS:
        out = _evaluate("--backend", "anthropic", "--model", model)
        assert f"over {LIMIT} gold decisions" in out and "F1" in out

    _check(gold, stand_in.quota, backend="anthropic")
    _compare_marks_the_best()
    assert _world() == before  # the backlog, every drain's items and the halachot untouched
    assert set(DrainRun.objects.values_list("drain", flat=True)) == {"evaluate"}
    # The effort goes to the API as the Messages API's output_config.
    _evaluate("--backend", "anthropic", "--model", "claude-haiku-4-5", "--effort", "low")
    assert stand_in.requests[-1].body["output_config"]["effort"] == "low"
    assert Evaluation.objects.filter(effort="low").get().label == \
        "anthropic:claude-haiku-4-5:low"


def test_evaluate_through_the_real_cli_as_a_subscriber(
    gold, stand_in, monkeypatch, settings, tmp_path
):
    use_real_cli(monkeypatch, settings, tmp_path, stand_in)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.setenv("CLAUDE_CODE_OAUTH_TOKEN", "test-oauth-token")
    settings.HALACHA_EXTRACTOR = "claude-cli"
    before = _world()

    for model in MODELS:
        _evaluate("--backend", "claude-cli", "--model", model)

    _check(gold, stand_in.quota, backend="claude-cli")
    _compare_marks_the_best()
    assert _world() == before


def _stale_reading(quota_key: str, *, week: float) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from drains.quota.signals import QuotaSignal, WindowReading
    from drains.quota.store import record_signal

    at = timezone.now() - timedelta(days=1)
    record_signal(quota_key=quota_key, drain="halacha", run_id=None, now=at, signal=QuotaSignal(
        windows=(WindowReading("seven_day", week, at + timedelta(days=3), "allowed"),
                 WindowReading("five_hour", 0.0, at + timedelta(hours=3), "allowed")),
        source="api"))


def _sdk(monkeypatch, settings, stub) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", stub.url)
    settings.HALACHA_EXTRACTOR = "anthropic"
    settings.ANTHROPIC_API_KEY = "sk-ant-test-key"


def test_a_model_the_service_refuses_is_the_evaluations_finding_and_blocks_no_drain(
    monkeypatch, settings
):
    refuse = StubResponse(404, error_body("not_found_error", "model: claude-typo"))
    with AnthropicStub(responder=lambda request: refuse) as stub:
        _sdk(monkeypatch, settings, stub)
        with pytest.raises(CommandError, match="every item failed"):
            call_command("evaluate", "--limit", "8", "--model", "claude-typo",
                         stdout=io.StringIO(), stderr=io.StringIO())
    assert len(stub.requests) == 8  # every case asked once: no breaker stopped it
    row = Evaluation.objects.get()
    assert (row.decisions, row.asked, row.answered, row.true_positives) == (8, 8, 0, 0)
    assert row.complete and "the run failed" in row.note
    # The drains on the same quota are not blocked, and nothing of it is left pending.
    assert not DrainControl.objects.exclude(name="evaluate").filter(
        backoff_until__isnull=False).exists()
    assert not Item.objects.filter(drain="evaluate", status="pending").exists()
    with pytest.raises(CommandError, match="answered 0 of 8"):
        call_command("evaluate", "--use", str(row.pk), stdout=io.StringIO())


def test_an_evaluation_stopped_short_is_scored_on_what_it_asked_and_never_the_best(
    monkeypatch, settings, gold
):
    answered = []

    def respond(request) -> StubResponse:
        prompt = json.dumps(request.body["messages"], ensure_ascii=False)
        if len(answered) >= 2:  # the week is full after two answers
            return StubResponse(429, error_body("rate_limit_error", "weekly limit"), {
                "anthropic-ratelimit-unified-status": "rejected",
                "anthropic-ratelimit-unified-reset": str(int(time.time()) + 86400)})
        (external_id,) = re.findall(r"external id: (gold-[a-z]{2}-\d+)", prompt)
        answered.append(external_id)
        return StubResponse(200, message_body(goldset.reply_for(gold[external_id]),
                                              model=request.body["model"]))

    with AnthropicStub(responder=respond) as stub:
        _sdk(monkeypatch, settings, stub)
        out = _evaluate("--backend", "anthropic")
        # While the quota backs off, another evaluation is refused: it would ask nothing.
        with pytest.raises(CommandError, match="backs off until"):
            _evaluate("--backend", "anthropic", "--model", "claude-haiku-4-5")
    row = Evaluation.objects.get()
    asked_gold = sum(len(gold[i].halachot) for i in answered)
    assert (row.decisions, row.asked, row.answered) == (LIMIT, 2, 2)
    assert (row.true_positives, row.gold) == (asked_gold, asked_gold)  # not the unasked ones
    assert not row.complete and f"{LIMIT - 2} of {LIMIT} decisions not asked" in row.note
    assert "(partial)" in _compare_table() and not any(r.best for r in evaluation.compare())
    assert "not asked" in out
    with pytest.raises(CommandError, match=f"answered 2 of {LIMIT}"):
        call_command("evaluate", "--use", str(row.pk), stdout=io.StringIO())
    assert not Item.objects.filter(drain="evaluate", status="pending").exists()


def test_bad_input_is_one_line_and_starts_nothing(settings):
    settings.HALACHA_EXTRACTOR = "offline"
    for args, words in (
        (["--backend", "nosuch"], "not a known backend"),
        (["--backend", "offline", "--effort", "low"], "takes no effort"),
        (["--compare", "--limit", "3"], "--compare runs no evaluation"),
    ):
        with pytest.raises(CommandError, match=words):
            call_command("evaluate", *args, stdout=io.StringIO(), stderr=io.StringIO())
    with pytest.raises(CommandError, match="effort"):
        call_command("evaluate", "--effort", "extreme", stdout=io.StringIO())
    assert not Evaluation.objects.exists() and not DrainRun.objects.exists()
    assert "No evaluation yet" in _compare_table()


def test_an_offline_evaluation_costs_nothing_and_grounds_what_its_rules_quote(settings):
    settings.HALACHA_EXTRACTOR = "offline"
    out = _evaluate()
    row = Evaluation.objects.get()
    assert (row.backend, row.decisions, row.answered, row.input_tokens) == ("offline", LIMIT,
                                                                            LIMIT, 0)
    assert row.week_moved is None and "no weekly reading came back" in out
    assert sum(row.tiers.values()) == row.predicted
    assert all(Tier[t.upper()] for t in row.tiers)
