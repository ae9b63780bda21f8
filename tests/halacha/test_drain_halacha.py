"""``manage.py drain_halacha`` with the real offline extractor, and the HalachaDrain hooks.

Expected halachot come from halacha/samples/expected_offline.json (written by hand for the
offline rules); the drain must store exactly those, in order, once, however often it runs.
"""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command

from drains.models import DrainRun, Item, StagedResult
from drains.runner import Processed
from drains.staging import promote_staged, stage_result
from halacha.drain import HalachaDrain
from halacha.importer import import_paths
from halacha.models import CourtDecision, Halacha
from tests.support.db import ROOT, child_env, manage
from tests.support.items import count, set_state, state, statuses

SAMPLES = ROOT / "halacha" / "samples"
EXPECTED = json.loads((SAMPLES / "expected_offline.json").read_text(encoding="utf-8"))

pytestmark = pytest.mark.django_db(transaction=True)  # the runtime commits as it goes


def drain(*args: str) -> str:
    out = io.StringIO()
    call_command("drain_halacha", "--trigger", "manual", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def stored_rules() -> dict[str, list[dict]]:
    rules: dict[str, list[dict]] = {}
    for halacha in Halacha.objects.select_related("decision").order_by("decision_id", "ordinal"):
        rules.setdefault(halacha.decision.external_id, []).append(
            {"rule": halacha.rule, "topics": halacha.topics}
        )
    return rules


def test_drain_halacha__offline_extracts_every_sample_once():
    import_paths([SAMPLES])
    assert CourtDecision.objects.count() == len(EXPECTED) == 33

    out = drain("--max-items", "100")

    assert "succeeded (backlog_empty): 33 done, 0 failed" in out
    expected = {key: value["rules"] for key, value in EXPECTED.items() if value["rules"]}
    assert stored_rules() == expected
    for halacha in Halacha.objects.select_related("decision"):
        assert halacha.quote in halacha.decision.text  # verbatim
        assert (halacha.extractor, halacha.model) == ("offline", "cue-rules-1")
    assert set(statuses()) == {"done"}
    assert not StagedResult.objects.exists()
    run = DrainRun.objects.get()
    assert (run.items_done, run.backlog_at_start, run.trigger) == (33, 33, "manual")

    again = drain()
    assert "0 done" in again
    assert stored_rules() == expected  # nothing added, nothing duplicated


def test_drain_halacha__the_default_batch_cap_bounds_a_cron_run(settings):
    settings.DRAINS_DEFAULT_MAX_ITEMS = 10
    import_paths([SAMPLES])
    out = drain()
    assert "succeeded (max_items): 10 done" in out
    assert count("halacha", status="pending") == 23


def test_drain_halacha__as_cron_runs_it_in_a_child_process():
    import_paths([SAMPLES])
    env = child_env()
    env.pop("HALACHA_EXTRACTOR", None)  # the default backend: offline
    result = manage("drain_halacha", "--trigger", "cron", env=env)  # as the cron line has it
    assert result.returncode == 0, result.stderr
    assert "33 done" in result.stdout
    assert DrainRun.objects.get().trigger == "cron"


def test_drain_halacha__from_a_shell_records_a_manual_run():
    import_paths([SAMPLES])
    call_command("drain_halacha", "--max-items", "1", stdout=io.StringIO(), stderr=io.StringIO())
    assert DrainRun.objects.get().trigger == "manual"


# --- the hooks ----------------------------------------------------------------------------------


def test_process__returns_a_json_payload_of_the_extraction(settings):
    settings.HALACHA_EXTRACTOR = "offline"
    decision = CourtDecision.objects.create(
        external_id="x-1",
        text="The appellant argued that the rule is that silence binds. We hold that a promise made "
        "without consideration is not binding.",
    )
    processed = HalachaDrain().process(decision)
    assert isinstance(processed, Processed)
    payload = json.loads(json.dumps(processed.payload))
    assert payload == processed.payload
    assert payload["extractor"] == "offline" and payload["model"] == "cue-rules-1"
    assert payload["halachot"] == [
        {
            "rule": "A promise made without consideration is not binding.",
            "quote": "We hold that a promise made without consideration is not binding.",
            "topics": ["contract"],
            "quote_spans": [[58, 123]],  # where it stands in the decision's text
            "grounding": "exact",
        }
    ]
    assert decision.text[58:123] == payload["halachot"][0]["quote"]
    assert set(processed.usage) >= {"input_tokens", "output_tokens"}


def test_promote__writes_ordered_halachot_and_marks_the_decision_done():
    decision = CourtDecision.objects.create(external_id="x-2", text="T.")
    HalachaDrain.mark_failed(str(decision.pk), "an earlier reply was not JSON", max_attempts=3)
    payload = {
        "extractor": "anthropic",
        "model": "claude-sonnet-4-6",
        "halachot": [
            {"rule": "First.", "quote": "q1", "topics": ["tort"]},
            {"rule": "Second.", "quote": "q2", "topics": []},
        ],
    }
    for promoted in (True, False):  # the second time: already done, nothing written again
        assert stage_result(drain="halacha", item_key=str(decision.pk), payload=payload)
        assert promote_staged(drain="halacha", item_key=str(decision.pk)) is promoted
    assert state("halacha", decision) == ("done", 1, "")
    assert Item.objects.get(drain="halacha", ref=decision.pk).done_at is not None
    assert list(decision.halachot.values_list("ordinal", "rule", "extractor", "model")) == [
        (1, "First.", "anthropic", "claude-sonnet-4-6"),
        (2, "Second.", "anthropic", "claude-sonnet-4-6"),
    ]


def test_promote__a_decision_with_no_halacha_is_done_with_none():
    decision = CourtDecision.objects.create(external_id="x-3", text="Appeal dismissed.")
    assert stage_result(
        drain="halacha", item_key=str(decision.pk), payload={"extractor": "offline", "halachot": []}
    )
    assert promote_staged(drain="halacha", item_key=str(decision.pk)) is True
    assert state("halacha", decision)[0] == "done" and decision.halachot.count() == 0


def test_mark_failed__counts_attempts_and_fails_at_the_limit():
    decision = CourtDecision.objects.create(external_id="x-4", text="T.")
    for attempt in (1, 2, 3):
        HalachaDrain.mark_failed(str(decision.pk), f"boom {attempt}", max_attempts=3)
        status = "failed" if attempt == 3 else "pending"
        assert state("halacha", decision) == (status, attempt, f"boom {attempt}")


def test_mark_failed__never_touches_a_done_decision():
    decision = CourtDecision.objects.create(external_id="x-5", text="T.")
    set_state("halacha", [decision], "done")
    HalachaDrain.mark_failed(str(decision.pk), "late failure", max_attempts=1)
    assert state("halacha", decision) == ("done", 0, "")


def test_backlog_counts_and_pending():
    CourtDecision.objects.create(external_id="a", text="T.")
    set_state("halacha", [CourtDecision.objects.create(external_id="b", text="T.")], "done")
    set_state("halacha", [CourtDecision.objects.create(external_id="c", text="T.")], "failed")
    CourtDecision.objects.create(external_id="d", text="T.")
    assert HalachaDrain.backlog_counts() == {"pending": 2, "done": 1, "failed": 1}
    assert HalachaDrain.pending_count() == 2
    assert HalachaDrain.command_line() == ["drain_halacha"]
