"""The offline extractor against the checked-in expected list for the sample set."""

from __future__ import annotations

import json

import pytest

from halacha.extractors import get_extractor
from halacha.extractors.offline import OfflineExtractor, find_rules, read_metadata, sentences
from halacha.extractors.protocol import ask_halachot, ask_metadata
from halacha.importer import import_paths
from halacha.models import CourtDecision
from tests.support.db import ROOT

SAMPLES = ROOT / "halacha" / "samples"
EXPECTED = json.loads((SAMPLES / "expected_offline.json").read_text(encoding="utf-8"))


@pytest.fixture
def samples(db):
    report = import_paths([SAMPLES])
    assert report.bad == 0, report.errors
    return {d.external_id: d for d in CourtDecision.objects.all()}


def test_expected_list_covers_the_sample_set(samples):
    assert set(EXPECTED) == set(samples)
    assert sum(len(e["rules"]) for e in EXPECTED.values()) >= 30
    assert any(not e["rules"] for e in EXPECTED.values())  # decisions that lay down no rule


def test_offline_finds_the_intended_rules(samples):
    extractor = OfflineExtractor()
    mismatches = {}
    for external_id, decision in samples.items():
        result = ask_halachot(extractor, decision)
        found = [{"rule": h.rule, "topics": sorted(h.topics)} for h in result.halachot]
        wanted = [
            {"rule": r["rule"], "topics": sorted(r["topics"])} for r in EXPECTED[external_id]["rules"]
        ]
        if found != wanted:
            mismatches[external_id] = {"found": found, "wanted": wanted}
    assert not mismatches


def test_every_offline_quote_is_verbatim_and_states_its_rule(samples):
    extractor = OfflineExtractor()
    quotes = 0
    for decision in samples.values():
        result = ask_halachot(extractor, decision)
        assert result.rejected == 0 and result.problems == []
        for halacha in result.halachot:
            assert halacha.quote in decision.text
            assert halacha.rule[1:] in halacha.quote  # the rule is the quote minus its cue
            quotes += 1
    assert quotes >= 30


def test_offline_metadata_matches_the_headers(samples):
    extractor = OfflineExtractor()
    for external_id, decision in samples.items():
        meta = ask_metadata(extractor, decision)
        got = {
            "court": meta.court,
            "case_number": meta.case_number,
            "decided_on": meta.decided_on.isoformat() if meta.decided_on else None,
            "judges": meta.judges,
            "parties": meta.parties,
        }
        assert got == EXPECTED[external_id]["metadata"], external_id
        json.dumps(meta.raw)  # storable as it is


def test_offline_result_shape(samples):
    extractor = get_extractor("offline")
    assert extractor.quota_key() == "offline"
    decision = samples["sc-en-002"]
    first, second = ask_halachot(extractor, decision), ask_halachot(extractor, decision)
    assert first.halachot == second.halachot  # deterministic
    assert first.extractor == "offline" and first.model == extractor.model
    assert first.usage == {
        "input_tokens": 0,
        "output_tokens": 0,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "model_usage": {},  # no model was spent on
    }
    assert json.loads(json.dumps(first.raw))["reply"].startswith('{"halachot": [')


@pytest.mark.parametrize(
    "sentence",
    [
        "The appellant argued that the rule is that notice may be oral.",
        "Counsel submitted, in the alternative, that we hold that costs follow the event.",
        "המשיבה טענה כי נקבע כי אין חובה להודיע מראש.",
        "לטענת העותר, הלכה היא כי ההודעה בטלה.",
        "בית המשפט קבע כי ההודעה בטלה.",
        "We hold that costs.",  # a cue with no rule after it
    ],
)
def test_find_rules__reported_speech_and_fragments_are_not_rules(sentence):
    assert find_rules(sentence) == []


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("We hold, however, that a lease may be ended by e-mail.", "A lease may be ended by e-mail."),
        ("It is hereby held that a deposit is held in trust.", "A deposit is held in trust."),
        ("עוד אנו קובעים כי ההודעה תימסר בכתב.", "ההודעה תימסר בכתב."),
        ("הלכה היא שמשכיר חייב לתקן ליקויים.", "משכיר חייב לתקן ליקויים."),
    ],
)
def test_find_rules__cue_variants(text, rule):
    (found,) = find_rules(text)
    assert found["rule"] == rule and found["quote"] == text


def test_sentences__abbreviations_and_initials_do_not_split():
    text = "Before us is Harbor Ltd. of Haifa. Judge A. Levi agreed. We hold that X is Y.\nNext line"
    parts = [text[s:e] for s, e in sentences(text)]
    assert parts == [
        "Before us is Harbor Ltd. of Haifa.",
        "Judge A. Levi agreed.",
        "We hold that X is Y.",
        "Next line",
    ]


def test_read_metadata__other_forms():
    text = (
        "Court: Regional Labour Court, Haifa\n"
        "File No. 77/25\n"
        "Coram: Hon. Chief Justice R. Amit and Judge D. Bar\n"
        "Petitioners: Alpha Ltd.; Beta Ltd.\n"
        "Judgment given: March 4, 2025\n\n"
        "Before the hearing, the parties agreed on the facts."
    )
    assert read_metadata(text) == {
        "court": "Regional Labour Court, Haifa",
        "case_number": "77/25",
        "decided_on": __import__("datetime").date(2025, 3, 4),
        "judges": ["R. Amit", "D. Bar"],
        "parties": ["Alpha Ltd.", "Beta Ltd."],
    }


def test_read_metadata__hebrew_date_in_words_and_nothing_found():
    assert read_metadata('ניתן היום, כ"ג בשבט התשפ"ב (24.1.2022)')["decided_on"].isoformat() == (
        "2022-01-24"
    )
    assert read_metadata("Just a paragraph with no header at all.") == {
        "court": None,
        "case_number": None,
        "decided_on": None,
        "judges": [],
        "parties": [],
    }
