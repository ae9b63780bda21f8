"""Reply validation shared by every backend: schema, fences, verbatim quotes."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path
from types import SimpleNamespace

import pytest

from halacha.extractors import prompts
from halacha.extractors.base import ExtractionError
from halacha.extractors.prompts import HALACHA_SCHEMA, SYSTEM_PROMPT, user_prompt
from halacha.extractors.protocol import ReplyError, parse_halachot, parse_metadata, strip_fence

TEXT = "The tenant left early. We hold that a lease ends only by notice. Costs to the landlord."
QUOTE = "We hold that a lease ends only by notice."


def reply(*items, **extra) -> str:
    return json.dumps({"halachot": list(items), **extra})


def item(rule="A lease ends only by notice.", quote=QUOTE, topics=("property",)):
    return {"rule": rule, "quote": quote, "topics": list(topics)}


def test_good_reply():
    parsed = parse_halachot(reply(item()), TEXT)
    assert parsed.rejected == 0 and parsed.problems == []
    (halacha,) = parsed.halachot
    assert (halacha.rule, halacha.quote, halacha.topics) == (
        "A lease ends only by notice.",
        QUOTE,
        ["property"],
    )


@pytest.mark.parametrize(
    "wrapped",
    [
        "```json\n{body}\n```",
        "```\n{body}\n```",
        "  ```JSON\r\n{body}\r\n```  \n",
    ],
)
def test_code_fence_is_tolerated(wrapped):
    parsed = parse_halachot(wrapped.replace("{body}", reply(item())), TEXT)
    assert len(parsed.halachot) == 1


def test_fabricated_quote_is_rejected_and_counted():
    fabricated = item(rule="Leases are sacred.", quote="We hold that leases are sacred.")
    parsed = parse_halachot(reply(item(), fabricated), TEXT)
    assert [h.rule for h in parsed.halachot] == ["A lease ends only by notice."]
    assert parsed.rejected == 1
    assert parsed.problems == [
        "halacha 2 rejected: the quote does not occur in the decision, verbatim or by the "
        "grounding ladder: "
        "'We hold that leases are sacred.'"
    ]


def test_near_miss_quote_is_rejected():
    # One changed character (a curly apostrophe, a dropped word) is not verbatim.
    parsed = parse_halachot(reply(item(quote="We hold that a lease ends by notice.")), TEXT)
    assert parsed.halachot == [] and parsed.rejected == 1


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        (item(rule="  "), "the rule is missing or empty"),
        ({"quote": QUOTE, "topics": []}, "the rule is missing or empty"),
        (item(quote=""), "the quote is missing or empty"),
        ({"rule": "r", "quote": QUOTE, "topics": "property"}, "topics must be a list of strings"),
        ("just a string", "not an object but str"),
    ],
)
def test_bad_items_are_rejected(bad, problem):
    parsed = parse_halachot(reply(bad, item()), TEXT)
    assert len(parsed.halachot) == 1 and parsed.rejected == 1
    assert parsed.problems == [f"halacha 1 rejected: {problem}"]


def test_quote_whitespace_and_topics_are_tidied():
    parsed = parse_halachot(reply(item(quote=f"  {QUOTE}\n", topics=[" tort ", "tort", ""])), TEXT)
    assert parsed.halachot[0].quote == QUOTE
    assert parsed.halachot[0].topics == ["tort"]


def test_missing_topics_are_an_empty_list():
    parsed = parse_halachot(json.dumps({"halachot": [{"rule": "r r r", "quote": QUOTE}]}), TEXT)
    assert parsed.halachot[0].topics == []


def test_empty_list_is_a_valid_answer():
    parsed = parse_halachot('{"halachot": []}', TEXT)
    assert parsed.halachot == [] and parsed.rejected == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"halachot": [', "not JSON"),
        ("Here are the rules: none.", "not JSON"),
        ("[1, 2]", "not an object"),
        ('{"rules": []}', 'no "halachot" list (keys: rules)'),
        ('{"halachot": {"rule": "r"}}', 'no "halachot" list'),
    ],
)
def test_unusable_replies_raise(text, message):
    with pytest.raises(ReplyError) as info:
        parse_halachot(text, TEXT)
    assert message in str(info.value)
    assert isinstance(info.value, ExtractionError)


def test_extra_top_level_keys_are_noted():
    parsed = parse_halachot(reply(item(), notes="x"), TEXT)
    assert len(parsed.halachot) == 1
    assert parsed.problems == ["ignored unexpected keys: notes"]


def test_strip_fence_leaves_plain_json_alone():
    assert strip_fence(' {"a": 1} ') == '{"a": 1}'


def test_parse_metadata():
    meta = parse_metadata(
        '```json\n{"court": "Supreme Court", "case_number": " CA 1/24 ", "decided_on": "2024-03-01",'
        ' "judges": ["A", "A", "B"], "parties": []}\n```'
    )
    assert meta.court == "Supreme Court" and meta.case_number == "CA 1/24"
    assert meta.decided_on == date(2024, 3, 1)
    assert meta.judges == ["A", "B"] and meta.parties == []
    empty = parse_metadata('{"court": null, "case_number": "", "decided_on": null}')
    assert (empty.court, empty.case_number, empty.decided_on, empty.judges) == (None, None, None, [])


@pytest.mark.parametrize(
    "text",
    [
        '{"decided_on": "1 March 2024"}',
        '{"judges": "A, B"}',
        '{"court": 7}',
        "not json",
    ],
)
def test_parse_metadata__refusals(text):
    with pytest.raises(ReplyError):
        parse_metadata(text)


def test_prompts():
    decision = SimpleNamespace(
        external_id="x-1",
        language="en",
        court="Supreme Court",
        case_number="",
        decided_on=date(2024, 3, 1),
        title="",
        text=TEXT,
    )
    prompt = user_prompt(decision)
    assert prompt.endswith(f"<decision>\n{TEXT}\n</decision>")
    assert "court: Supreme Court" in prompt and "decided on: 2024-03-01" in prompt
    assert "case number" not in prompt  # empty details are left out
    # The system prompt is the cached prefix: long enough to be cached, and its line
    # continuations did not glue words together.
    assert len(SYSTEM_PROMPT) > 4500
    assert '{"halachot": [{"rule": "...", "quote": "...", "topics": ["..."]}]}' in SYSTEM_PROMPT
    source = Path(prompts.__file__).read_text(encoding="utf-8")
    assert re.findall(r"[^\s\"]\\\n", source) == []  # every continued line ends in a space
    assert HALACHA_SCHEMA["required"] == ["halachot"]
