"""The gold set (halacha/gold.py, halacha/gold/): the shipped decisions are what docs/quality.md
says they are and every gold quote grounds exactly at its span; the loader refuses each kind of
broken file, naming the file and the field; the score matches predictions to gold halachot one to
one by overlap; and a reply written from the gold goes through the halacha parser unchanged.
No database: the set is plain files."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from halacha.extractors.protocol import parse_halachot
from halacha.gold import (
    FOLDER,
    GoldDecision,
    GoldSetError,
    Score,
    load,
    load_file,
    match,
    reply_for,
    score,
)
from halacha.grounding import Tier, ground

GERSHAYIM, GERESH, MAQAF, NBSP = "\u05f4", "\u05f3", "\u05be", "\u00a0"
POINTS = re.compile("[\u0591-\u05bd\u05bf\u05c1\u05c2\u05c4\u05c5\u05c7]")
FILES = sorted(FOLDER.glob("*.json"))
HE_MONTHS = ("ינואר", "פברואר", "מרץ", "אפריל", "מאי", "יוני", "יולי", "אוגוסט", "ספטמבר",
             "אוקטובר", "נובמבר", "דצמבר")
EN_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
             "September", "October", "November", "December")


@pytest.fixture(scope="module")
def shipped() -> list[GoldDecision]:
    return load()


# --- the shipped set ----------------------------------------------------------------------------


def test_the_shipped_set_has_at_least_24_decisions_half_hebrew_half_english(shipped):
    languages = [decision.language for decision in shipped]
    assert len(shipped) >= 24
    assert languages.count("he") >= 12 and languages.count("en") >= 12
    assert abs(languages.count("he") - languages.count("en")) <= 1
    assert len(FILES) == len(shipped)  # every file in the folder is a decision


@pytest.mark.parametrize("path", FILES, ids=[path.stem for path in FILES])
def test_each_decision_reads_as_a_court_text(path):
    decision = load_file(path)
    text = decision.text
    assert 1500 <= len(text) <= 6000
    assert decision.id == path.stem
    assert 2 <= len(decision.halachot) <= 5
    # a header block: the court, the case number and the bench before the reasons begin
    header = text[:900]
    assert decision.court in header and decision.case_number in header
    assert re.search(r"לפני|בפני|Before", header)
    # the date it was given, as the decision writes it
    day, month, year = (decision.decided_on.day, decision.decided_on.month,
                        decision.decided_on.year)
    written = [f"{day}.{month}.{year}", f"{day} {EN_MONTHS[month - 1]} {year}",
               f"{day} {HE_MONTHS[month - 1]} {year}", f"{day} ב{HE_MONTHS[month - 1]} {year}"]
    assert any(form in text for form in written), written
    # wrapped as a typed or scanned decision: no long line, sentences broken across lines
    lines = text.split("\n")
    assert max(len(line) for line in lines) <= 100
    broken = [a for a, b in zip(lines, lines[1:], strict=False)
              if a.strip() and b.strip() and a.rstrip()[-1] not in ".:;"]
    assert len(broken) >= 10
    assert any("\n" in halacha.quote for halacha in decision.halachot)


def test_the_hebrew_decisions_carry_their_typography(shipped):
    hebrew = [decision.text for decision in shipped if decision.language == "he"]
    assert all(GERSHAYIM in text for text in hebrew)
    assert sum(MAQAF in text for text in hebrew) >= len(hebrew) - 1
    assert sum(GERESH in text for text in hebrew) >= len(hebrew) - 2
    assert sum(bool(POINTS.search(text)) for text in hebrew) >= 3  # a few pointed words
    assert sum(NBSP in text for text in hebrew) >= 3


def test_the_english_decisions_include_typeset_ones(shipped):
    english = [decision.text for decision in shipped if decision.language == "en"]
    assert sum("\u201c" in text and "\u2014" in text for text in english) >= 2
    assert sum(NBSP in text for text in english) >= 3
    assert any('"' in text for text in english)  # and typed ones, with straight quotes


@pytest.mark.parametrize("path", FILES, ids=[path.stem for path in FILES])
def test_every_gold_quote_grounds_exactly_at_its_span(path):
    decision = load_file(path)
    for halacha in decision.halachot:
        grounded = ground(halacha.quote, decision.text)
        assert grounded is not None
        assert grounded.tier == Tier.EXACT
        assert grounded.spans == (halacha.span,)
        assert decision.text.count(halacha.quote) == 1  # no other place it could be


# --- the loader refuses a broken file ---------------------------------------------------------


def _good() -> dict[str, Any]:
    return json.loads(FILES[0].read_text(encoding="utf-8"))


def _write(folder: Path, name: str, data: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    path.write_text(text, encoding="utf-8")
    return path


def _shift_span(data: dict[str, Any]) -> None:
    start, end = data["halachot"][0]["span"]
    data["halachot"][0]["span"] = [start + 1, end + 1]


def _overlap(data: dict[str, Any]) -> None:
    """The second gold quote made to start inside the first and run past its end."""
    text = data["text"]
    start, end = data["halachot"][0]["span"]
    begin, finish = start + 1, end + 30
    while text[begin].isspace():
        begin += 1
    while text[finish - 1].isspace():
        finish -= 1
    data["halachot"][1].update(quote=text[begin:finish], span=[begin, finish])


BROKEN: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "missing field": (lambda d: d.pop("court"), "court: missing"),
    "unexpected field": (lambda d: d.update(judge="x"), "judge: unexpected field"),
    "missing halacha field": (lambda d: d["halachot"][1].pop("rule"),
                              "halachot[1].rule: missing"),
    "empty rule": (lambda d: d["halachot"][0].update(rule="  "),
                   "halachot[0].rule: must be a non-empty string"),
    "language": (lambda d: d.update(language="fr"), "language: 'fr' is not one of he, en"),
    "date": (lambda d: d.update(decided_on="30.10.2023"),
             "decided_on: '30.10.2023' is not a YYYY-MM-DD date"),
    "span off the quote": (_shift_span, "halachot[0].span: "),
    "quote not in text": (lambda d: d["halachot"][2].update(quote="a paraphrase, not the text"),
                          "halachot[2].quote: does not occur in the text"),
    "span outside the text": (lambda d: d["halachot"][0].update(span=[10, 10 ** 6]),
                              "halachot[0].span: [10, 1000000] is not [start, end]"),
    "span not a pair": (lambda d: d["halachot"][0].update(span=[10]),
                        "halachot[0].span: [10] is not [start, end]"),
    "quote with whitespace": (lambda d: d["halachot"][0].update(
        quote=d["halachot"][0]["quote"] + "\n",
        span=[d["halachot"][0]["span"][0], d["halachot"][0]["span"][1] + 1]),
        "halachot[0].quote: begins or ends with whitespace"),
    "overlapping spans": (_overlap, "halachot[1].span: "),
    "no halachot": (lambda d: d.update(halachot=[]), "halachot: must be a non-empty list"),
}


@pytest.mark.parametrize("case", BROKEN)
def test_the_loader_refuses_a_broken_file_naming_the_file_and_the_field(case, tmp_path):
    break_it, message = BROKEN[case]
    data = _good()
    break_it(data)
    _write(tmp_path, "gold-xx-01.json", dict(_good(), id="gold-xx-01"))
    _write(tmp_path, "gold-xx-02.json", data)
    with pytest.raises(GoldSetError) as refused:
        load(tmp_path)
    assert str(refused.value).startswith(f"{tmp_path / 'gold-xx-02.json'}: ")
    assert message in str(refused.value)


def test_the_broken_spans_are_broken_only_as_the_cases_say():
    overlapping = _good()
    _overlap(overlapping)
    (first, second) = (overlapping["halachot"][0], overlapping["halachot"][1])
    assert first["span"][0] < second["span"][0] < first["span"][1] < second["span"][1]
    assert overlapping["text"][slice(*second["span"])] == second["quote"]
    shifted = _good()
    _shift_span(shifted)
    assert shifted["text"][slice(*shifted["halachot"][0]["span"])] != shifted["halachot"][0]["quote"]


def test_the_loader_says_where_a_quote_off_its_span_really_is(tmp_path):
    data = _good()
    start, end = data["halachot"][0]["span"]
    data["halachot"][0]["span"] = [start + 3, end + 3]
    path = _write(tmp_path, "gold-xx-01.json", data)
    with pytest.raises(GoldSetError, match=re.escape(f"which is at [{start}, {end}]")):
        load_file(path)


def test_the_loader_refuses_a_duplicate_id(tmp_path):
    _write(tmp_path, "a.json", _good())
    _write(tmp_path, "b.json", _good())
    with pytest.raises(GoldSetError) as refused:
        load(tmp_path)
    assert str(refused.value).startswith(f"{tmp_path / 'b.json'}: id: ")
    assert "is already the id of a.json" in str(refused.value)


@pytest.mark.parametrize("content, message", [
    ("{not json", "is not JSON"),
    ("[1, 2]", "holds a JSON list, not an object"),
])
def test_the_loader_refuses_a_file_that_is_not_a_json_object(tmp_path, content, message):
    _write(tmp_path, "gold-xx-01.json", content)
    with pytest.raises(GoldSetError, match=re.escape(f"gold-xx-01.json: {message}")):
        load(tmp_path)


def test_the_loader_refuses_an_empty_or_missing_folder(tmp_path):
    with pytest.raises(GoldSetError, match="holds no gold files"):
        load(tmp_path)
    with pytest.raises(GoldSetError, match="not a folder"):
        load(tmp_path / "nowhere")


# --- scoring ----------------------------------------------------------------------------------


GOLD = [(100, 200), (300, 400), (500, 600), (700, 800)]


def test_exact_predictions_score_one():
    result = score(GOLD, [[span] for span in GOLD])
    assert (result.precision, result.recall, result.f1) == (1.0, 1.0, 1.0)
    assert (result.true_positives, result.predicted, result.gold) == (4, 4, 4)


def test_half_the_halachot_missing_is_recall_one_half_at_full_precision():
    result = score(GOLD, [[GOLD[0]], [GOLD[2]]])
    assert (result.precision, result.recall) == (1.0, 0.5)
    assert result.f1 == pytest.approx(2 / 3)


@pytest.mark.parametrize("predicted", [
    [(100, 149)],  # under half of the gold passage
    [(100, 200), (200, 301)],  # all of it, but it is under half of the prediction
    [(0, 1000)],  # the whole decision
    [],  # no span at all
])
def test_a_prediction_overlapping_too_little_is_no_match(predicted):
    result = score([(100, 200)], [predicted])
    assert result.true_positives == 0 and result.precision == 0.0 and result.recall == 0.0


def test_at_least_half_both_ways_is_a_match():
    assert score([(100, 200)], [[(100, 150)]]).true_positives == 1  # half the gold, all its own
    assert score([(100, 200)], [[(100, 200), (200, 300)]]).true_positives == 1  # half its own


def test_an_ellipsis_prediction_of_two_spans_inside_the_gold_passage_matches():
    # "We hold that … the tenant is protected": the first and last parts, the middle left out
    assert score([(100, 200)], [[(100, 140), (170, 200)]]).true_positives == 1
    # its spans are counted once even if they overlap each other
    assert score([(100, 200)], [[(100, 160), (110, 160), (190, 200)]]).true_positives == 1
    assert score([(100, 200)], [[(100, 140), (100, 140)]]).true_positives == 0  # 40, not 80
    # two passages of which only one is in the gold passage: the prediction is half elsewhere
    assert score([(100, 200)], [[(100, 200), (400, 520)]]).true_positives == 0


def test_one_prediction_cannot_match_two_gold_halachot():
    gold = [(0, 100), (100, 200)]
    predicted = [[(50, 150)]]  # exactly half of each, and each half of it
    assert len([g for g in range(2) if score([gold[g]], predicted).true_positives]) == 2
    result = score(gold, predicted)
    assert (result.true_positives, result.precision, result.recall) == (1, 1.0, 0.5)


def test_a_duplicated_prediction_counts_once():
    result = score([(100, 200)], [[(100, 200)], [(100, 200)]])
    assert (result.true_positives, result.precision, result.recall) == (1, 0.5, 1.0)


def test_the_pairing_is_optimal_not_first_come():
    # the first prediction fits both gold passages, the second only the first: a first-come
    # pairing gives the first gold passage to the first prediction and loses the second pair
    gold = [(0, 100), (100, 200)]
    predicted = [[(50, 150)], [(0, 100)]]
    assert match(gold, predicted) == {0: 1, 1: 0}
    assert score(gold, predicted).true_positives == 2


def test_scores_add_up_to_the_micro_average():
    total = sum([Score(1, 1, 2), Score(3, 4, 4), Score(0, 0, 1)], Score())
    assert total == Score(true_positives=4, predicted=5, gold=7)
    assert (total.precision, total.recall) == (0.8, pytest.approx(4 / 7))
    assert total.f1 == pytest.approx(2 * 4 / (5 + 7))


def test_a_rate_with_nothing_to_divide_by_is_zero():
    assert (Score().precision, Score().recall, Score().f1) == (0.0, 0.0, 0.0)
    assert score([], [[(0, 10)]]) == Score(0, 1, 0)


def test_a_malformed_span_is_refused():
    with pytest.raises(ValueError, match="a span is"):
        score([(10, 5)], [])
    with pytest.raises(ValueError, match="empty"):
        score([(10, 10)], [])


# --- a reply written from the gold, through the halacha parser ------------------------------------


@pytest.mark.parametrize("path", FILES, ids=[path.stem for path in FILES])
def test_the_gold_reply_is_kept_whole_by_the_parser_and_scores_one(path):
    decision = load_file(path)
    parsed = parse_halachot(reply_for(decision), decision.text)
    assert parsed.rejected == 0 and parsed.problems == []
    assert [h.grounding for h in parsed.halachot] == ["exact"] * len(decision.halachot)
    assert [h.rule for h in parsed.halachot] == [h.rule for h in decision.halachot]
    assert score(decision.spans, [h.quote_spans for h in parsed.halachot]).f1 == 1.0


def test_a_reply_with_the_models_copies_grounds_at_the_gold_spans(shipped):
    for decision in shipped:
        copies = [" ".join(h.quote.split()) for h in decision.halachot]  # one line each
        parsed = parse_halachot(reply_for(decision, copies), decision.text)
        assert {h.grounding for h in parsed.halachot} <= {"exact", "whitespace"}
        assert score(decision.spans, [h.quote_spans for h in parsed.halachot]).f1 == 1.0


def test_reply_for_needs_one_quote_per_halacha(shipped):
    with pytest.raises(ValueError, match="quotes"):
        reply_for(shipped[0], ["only one"])
