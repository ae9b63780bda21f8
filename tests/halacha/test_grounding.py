"""Grounding a quote in the decision's text (halacha/grounding.py): each tier of the ladder, in
Hebrew and in English, on a quote that exact matching rejects; what is stored is the decision's
own slice; paraphrases, passages out of order and another decision's text stay rejected."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from halacha.grounding import ELLIPSIS_GAP, JOINER, Tier, ground

MAQAF, GERSHAYIM, GERESH, NBSP, RLM, ZWJ = "\u05be", "\u05f4", "\u05f3", "\u00a0", "\u200f", "\u200d"

HE = (
    "בית המשפט העליון\n"
    f"ע{GERSHAYIM}א 4471/23 פלוני נ{GERESH} אלמוני\n\n"
    f"נקבע כי בעל{MAQAF}הבית אינו רשאי לנתק את אספקת המים\nכדי לכפות על השוכר לעזוב.{NBSP}"
    "עוד נקבע כי הַשּׂוֹכֵר זכאי להגנה מלאה מפני פינוי ללא צו שיפוטי.\n"
    f"הערעור נדחה.{RLM} ההחלטה ניתנה היום."
)
EN = (
    "Tel Aviv District Court\nCivil Appeal 4471-09-23\n\n"
    "We hold that a landlord may not cut off water\nto force a tenant out. "
    "The rule is that a \u201cpermit\u201d means a written permit \u2014 not an oral one. "
    "The caf\u00e9's permit was void. "
    f"It is held that the tenant{NBSP}is protected from eviction without an order. "
    "The appeal is dismissed."
)

# (text, the model's copy, the tier that grounds it, the decision's own slice it must store)
CASES = {
    # the same points typed in another order (sin dot before dagesh): canonically equivalent
    "he-nfc": (HE, "הַש\u05c2\u05bcוֹכֵר זכאי", Tier.NFC, "הַשּׂוֹכֵר זכאי"),
    "en-nfc": (EN, "The cafe\u0301's permit was void", Tier.NFC, "The caf\u00e9's permit was void"),
    "he-whitespace": (HE, "אספקת המים כדי לכפות", Tier.WHITESPACE, "אספקת המים\nכדי לכפות"),
    "he-quotes": (HE, 'ע"א 4471/23 פלוני נ\' אלמוני', Tier.QUOTES,
                  f"ע{GERSHAYIM}א 4471/23 פלוני נ{GERESH} אלמוני"),
    "he-dashes": (HE, "בעל-הבית אינו רשאי", Tier.DASHES, f"בעל{MAQAF}הבית אינו רשאי"),
    "he-points": (HE, "השוכר זכאי להגנה מלאה", Tier.POINTS, "הַשּׂוֹכֵר זכאי להגנה מלאה"),
    "he-invisible": (HE, "הערעור נדחה. ההחלטה ניתנה", Tier.INVISIBLE,
                     f"הערעור נדחה.{RLM} ההחלטה ניתנה"),
    "en-whitespace": (EN, "may not cut off water to force a tenant out", Tier.WHITESPACE,
                      "may not cut off water\nto force a tenant out"),
    "en-quotes": (EN, 'a "permit" means a written permit', Tier.QUOTES,
                  "a \u201cpermit\u201d means a written permit"),
    "en-dashes": (EN, "a written permit - not an oral one", Tier.DASHES,
                  "a written permit \u2014 not an oral one"),
    "en-nbsp": (EN, "the tenant is protected from eviction", Tier.WHITESPACE,
                f"the tenant{NBSP}is protected from eviction"),
    "en-invisible": (EN.replace("dismissed", f"dis{ZWJ}missed"), "The appeal is dismissed",
                     Tier.INVISIBLE, f"The appeal is dis{ZWJ}missed"),
}


@pytest.mark.parametrize("case", CASES)
def test_each_tier_grounds_what_exact_matching_rejects_and_stores_the_decisions_own_text(case):
    text, copy, tier, own = CASES[case]
    assert copy not in text  # exact matching alone loses this halacha
    grounded = ground(copy, text)
    assert grounded is not None
    assert grounded.tier == tier
    ((start, end),) = grounded.spans
    assert text[start:end] == grounded.text == own  # verbatim: the decision's slice


def test_an_exact_quote_is_the_exact_tier():
    grounded = ground("We hold that a landlord may not cut off water", EN)
    assert grounded.tier == Tier.EXACT and grounded.text in EN


@pytest.mark.parametrize("text, copy, first, second", [
    (EN, "We hold that a landlord may not cut off water ... the tenant is protected",
     "We hold that a landlord may not cut off water", f"the tenant{NBSP}is protected"),
    (HE, f"נקבע כי בעל{MAQAF}הבית אינו רשאי … השוכר זכאי להגנה מלאה",
     f"נקבע כי בעל{MAQAF}הבית אינו רשאי", "הַשּׂוֹכֵר זכאי להגנה מלאה"),
])
def test_passages_joined_by_an_ellipsis_are_each_grounded_in_order(text, copy, first, second):
    grounded = ground(copy, text)
    assert grounded is not None and grounded.tier == Tier.ELLIPSIS
    assert [text[s:e] for s, e in grounded.spans] == [first, second]
    assert grounded.text == first + JOINER + second


@pytest.mark.parametrize("text, copy", [
    (EN, "A landlord must never turn off the water supply"),  # a paraphrase
    (HE, "בעל בית אסור לו לנתק מים"),  # a paraphrase
    (EN, "the tenant is protected ... We hold that a landlord may not cut off water"),  # order
    (HE, "השוכר זכאי להגנה מלאה … נקבע כי בעל-הבית אינו רשאי"),  # out of order
    (EN, "An employer must pay overtime at the statutory rate"),  # another decision's text
    (EN, "We hold that ... dismissed"),  # passages too short to mean anything
])
def test_paraphrases_passages_out_of_order_and_other_text_stay_rejected(text, copy):
    assert ground(copy, text) is None


@pytest.mark.parametrize("text", [
    f"abc def {RLM} ghi jkl",  # a space, a dropped mark, a space: one space
    f"abc def {RLM} ghi jkl\u2126",  # the same when NFC makes the run go character by character
])
def test_spaces_on_both_sides_of_a_dropped_mark_are_one_space(text):
    grounded = ground("abc def ghi", text)
    assert grounded is not None and grounded.tier == Tier.INVISIBLE
    assert grounded.text == f"abc def {RLM} ghi"


def test_a_passage_is_taken_beside_its_neighbour_not_where_it_also_occurs_verbatim():
    filler = "Filler sentence here. " * 60
    text = (f"We hold that a landlord may not cut off water. The tenant{NBSP}is protected from "
            f"eviction. {filler}Elsewhere: the tenant is protected from eviction by statute.")
    grounded = ground(
        "We hold that a landlord may not cut off water ... tenant is protected from eviction", text)
    assert grounded is not None and grounded.spans[1][0] < 100


def test_a_first_passage_repeated_later_is_tried_again_beside_the_second():
    text = ("The court held that the permit was void. " + "Filler. " * 100
            + "The court held that the permit was void. Therefore the appeal is dismissed.")
    grounded = ground("The court held that the permit was void … Therefore the appeal is dismissed",
                      text)
    assert grounded is not None and grounded.spans[0][0] > 800


def test_passages_far_apart_are_not_one_quote():
    filler = "Nothing else is said here. " * (ELLIPSIS_GAP // 20)
    text = f"We hold that a landlord may not cut off water. {filler}The tenant is protected."
    assert ground("We hold that a landlord may not cut off water ... The tenant is protected",
                  text) is None


_VARIANTS = [
    lambda s: s.replace("\n", " "),
    lambda s: s.replace(GERSHAYIM, '"').replace(GERESH, "'"),
    lambda s: s.replace(MAQAF, "-"),
    lambda s: s.replace(NBSP, " "),
]


@given(
    words=st.lists(st.sampled_from(["שוכר", "בעל" + MAQAF + "הבית", "ע" + GERSHAYIM + "א",
                                    "tenant", "landlord", "water\n", "permit" + NBSP, "צו"]),
                   min_size=8, max_size=40),
    data=st.data(),
)
def test_a_typographic_variant_of_any_slice_grounds_to_that_very_text(words, data):
    text = " ".join(words)
    start = data.draw(st.integers(0, len(text) - 8))
    end = data.draw(st.integers(start + 8, len(text)))
    own = text[start:end].strip()
    if len(own) < 8:
        return
    copy = own
    for variant in data.draw(st.lists(st.sampled_from(_VARIANTS), max_size=4)):
        copy = variant(copy)
    grounded = ground(copy, text)
    assert grounded is not None
    ((s, e),) = grounded.spans
    assert text[s:e] == grounded.text  # always a slice of the decision
    assert ground(grounded.text, text).tier == Tier.EXACT


# --- stored: the decision's own text, its offsets, the tier; counted per run -----------------

import json  # noqa: E402

from django.db import connection  # noqa: E402
from django.db.migrations.executor import MigrationExecutor  # noqa: E402

from halacha.extractors.protocol import halachot_result  # noqa: E402


class _Decision:
    def __init__(self, text):
        self.text = text


def test_a_reply_keeps_each_grounded_quote_as_the_decisions_slice_and_counts_the_tiers():
    reply = json.dumps({"halachot": [
        {"rule": "No water cut-offs.", "quote": "We hold that a landlord may not cut off water"},
        {"rule": "Permits are written.", "quote": 'a "permit" means a written permit'},
        {"rule": "Invented.", "quote": "A landlord must never turn off the water supply"},
    ]})
    usage = {"input_tokens": 10, "output_tokens": 5}
    result = halachot_result(reply, _Decision(EN), raw=reply, usage=usage, extractor="anthropic",
                             model="claude-sonnet-4-6")
    kept = [(h.grounding, EN[h.quote_spans[0][0]:h.quote_spans[0][1]] == h.quote)
            for h in result.halachot]
    assert kept == [("exact", True), ("quotes", True)]
    assert result.rejected == 1 and "does not occur in the decision" in result.problems[0]
    counts = result.usage["model_usage"]["claude-sonnet-4-6"]
    assert (counts["quotes_exact"], counts["quotes_quotes"], counts["quotes_rejected"]) == (1, 1, 1)
    assert counts["calls"] == 1 and counts["input_tokens"] == 10


@pytest.mark.django_db(transaction=True)
def test_the_migration_finds_the_offsets_of_every_quote_stored_before_it():
    executor = MigrationExecutor(connection)
    executor.migrate([("halacha", "0001_initial")])
    old = executor.loader.project_state([("halacha", "0001_initial")]).apps
    decision = old.get_model("halacha", "CourtDecision").objects.create(
        external_id="m-1", text="Header\nWe hold that notice must be written. Dismissed.")
    old.get_model("halacha", "Halacha").objects.create(
        decision=decision, ordinal=1, rule="Notice is written.",
        quote="We hold that notice must be written.", extractor="offline")
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
    from halacha.models import Halacha

    halacha = Halacha.objects.get()
    ((start, end),) = halacha.quote_spans
    assert decision.text[start:end] == halacha.quote and halacha.grounding == "exact"


@pytest.mark.django_db(transaction=True)
def test_a_drain_run_keeps_the_typographic_variants_it_paid_for_and_counts_their_tiers(
    monkeypatch, settings
):
    import io

    from django.core.management import call_command

    from drains.models import DrainRun
    from halacha.models import CourtDecision, Halacha
    from tests.support.anthropic_stub import AnthropicStub

    decision = CourtDecision.objects.create(external_id="he-1", text=HE, language="he")
    with AnthropicStub() as stub:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", stub.url)
        settings.HALACHA_EXTRACTOR, settings.ANTHROPIC_API_KEY = "anthropic", "sk-ant-test-key"
        settings.HALACHA_MODEL = "claude-sonnet-4-6"
        stub.reply(json.dumps({"halachot": [
            {"rule": "אין לנתק מים.", "quote": "בעל-הבית אינו רשאי לנתק את אספקת המים כדי לכפות"},
            {"rule": "השוכר מוגן.", "quote": "השוכר זכאי להגנה מלאה"},
            {"rule": "ערעור.", "quote": 'ע"א 4471/23 פלוני נ\' אלמוני'},
            {"rule": "מומצא.", "quote": "המשכיר רשאי לעשות כרצונו"},
        ]}, ensure_ascii=False), model="claude-sonnet-4-6")
        call_command("drain_halacha", "--trigger", "manual", stdout=io.StringIO())
    stored = [(h.grounding, h.quote) for h in Halacha.objects.order_by("ordinal")]
    assert [tier for tier, _ in stored] == ["dashes", "points", "quotes"]
    for halacha in Halacha.objects.all():
        ((start, end),) = halacha.quote_spans
        assert decision.text[start:end] == halacha.quote  # verbatim, in place
    spent = DrainRun.objects.get(drain="halacha").model_usage["claude-sonnet-4-6"]
    assert {k: v for k, v in spent.items() if k.startswith("quotes_")} == {
        "quotes_dashes": 1, "quotes_points": 1, "quotes_quotes": 1, "quotes_rejected": 1}
