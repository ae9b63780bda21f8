"""The two decision drains' side of the model call: what they ask (``ask_halachot``,
``ask_metadata``: the prompts and JSON schemas of halacha/extractors/prompts.py, the offline rules
of halacha/extractors/offline.py), and what they make of the reply (its validation, the results).

Every backend's reply goes through here, so a rule is accepted or rejected the same way whoever
produced it: the reply must be ``{"halachot": [{"rule", "quote", "topics"}]}`` (a Markdown code
fence around it is tolerated), every rule non-empty, and every quote must be grounded in the
decision's text (halacha/grounding.py: exact, or after a fixed ladder of typographic
normalisations; what is kept is the decision's own slice, with its offsets and the tier that
found it). A rule whose quote is not is rejected and counted, never stored as if good. The tiers
and rejections are counted per call in its ``model_usage`` (``quotes_exact``, …,
``quotes_rejected``), so each run sums them per model. A paid-for reply that fails validation
carries its raw reply and usage whichever backend made it, and each result's usage names the
model it was spent on (``model_usage``, summed per run by the drain runtime).

This module never touches the database; it calls a model only through the backend it is given.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from drains.quota.signals import QuotaSignal
from halacha import grounding
from halacha.extractors.base import (
    ExtractionError,
    Extractor,
    ModelCall,
    with_model_usage,
)
from halacha.extractors.offline import halachot_reply, metadata_reply
from halacha.extractors.prompts import (
    HALACHA_SCHEMA,
    METADATA_SCHEMA,
    METADATA_SYSTEM_PROMPT,
    SYSTEM_PROMPT,
    metadata_user_prompt,
    user_prompt,
)

MAX_TOPICS = 8
PROBLEM_EXCERPT = 120


@dataclass(frozen=True)
class ExtractedHalacha:
    rule: str
    quote: str  # the decision's own text (its slices joined by " … ")
    topics: list[str] = field(default_factory=list)
    quote_spans: list[list[int]] = field(default_factory=list)  # [[start, end], ...] in its text
    grounding: str = "exact"  # the tier that grounded the quote (halacha/grounding.py)


@dataclass
class ExtractionResult:
    """What one extraction produced.

    ``halachot`` holds only rules whose quote is grounded in the decision; ``rejected`` counts the
    others and ``problems`` says why each was dropped. ``raw`` is JSON-serialisable.
    """

    halachot: list[ExtractedHalacha]
    usage: dict[str, Any]
    raw: Any
    rejected: int = 0
    extractor: str = ""
    model: str = ""
    problems: list[str] = field(default_factory=list)
    quota: QuotaSignal = field(default_factory=QuotaSignal)  # what the call said of its windows


@dataclass
class MetadataResult:
    """Metadata read from a decision's text; None/empty where the text does not say."""

    court: str | None
    case_number: str | None
    decided_on: date | None
    judges: list[str]
    parties: list[str]
    usage: dict[str, Any]
    raw: Any
    extractor: str = ""
    model: str = ""
    quota: QuotaSignal = field(default_factory=QuotaSignal)


# --- the asks: one model call each, through any backend ------------------------------------


def ask_halachot(extractor: Extractor, decision) -> ExtractionResult:
    """The halacha drain's call for ``decision``: its halachot, validated against its text."""
    reply = extractor.call(ModelCall(
        system=SYSTEM_PROMPT, user=user_prompt(decision), schema=HALACHA_SCHEMA,
        offline=lambda: halachot_reply(decision.text), item=decision,
    ))
    return halachot_result(reply.text, decision, raw=reply.raw, usage=reply.usage,
                           extractor=reply.backend, model=reply.model, quota=reply.quota)


def ask_metadata(extractor: Extractor, decision) -> MetadataResult:
    """The metadata drain's call for ``decision``: court, case number, date, judges, parties."""
    reply = extractor.call(ModelCall(
        system=METADATA_SYSTEM_PROMPT, user=metadata_user_prompt(decision),
        schema=METADATA_SCHEMA, offline=lambda: metadata_reply(decision.text), item=decision,
    ))
    return metadata_result(reply.text, raw=reply.raw, usage=reply.usage,
                           extractor=reply.backend, model=reply.model, quota=reply.quota)


# --- reply validation -------------------------------------------------------------------------


class ReplyError(ExtractionError):
    """The model's reply is not the JSON asked for; the reply (and its cost) is attached."""


@dataclass
class ParsedReply:
    halachot: list[ExtractedHalacha]
    rejected: int = 0
    problems: list[str] = field(default_factory=list)

    def quote_counts(self) -> dict[str, int]:
        """How each quote fared: ``quotes_<tier>`` for the kept ones, ``quotes_rejected``."""
        counts = Counter(f"quotes_{h.grounding}" for h in self.halachot)
        if self.rejected:
            counts["quotes_rejected"] = self.rejected
        return dict(counts)


_FENCE_RE = re.compile(r"```[a-zA-Z0-9_-]*[ \t]*\r?\n(.*?)\r?\n?```", re.S)


def strip_fence(text: str) -> str:
    """The JSON inside a Markdown code fence, if the reply is fenced; the text otherwise."""
    stripped = (text or "").strip()
    if stripped.startswith("```"):
        match = _FENCE_RE.match(stripped)
        if match:
            return match.group(1).strip()
    return stripped


def _excerpt(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= PROBLEM_EXCERPT else text[: PROBLEM_EXCERPT - 1] + "…"


def load_json_object(reply: str, *, what: str) -> dict:
    body = strip_fence(reply)
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, TypeError) as exc:
        raise ReplyError(f"the {what} reply is not JSON ({exc}): {_excerpt(body)!r}") from None
    if not isinstance(data, dict):
        raise ReplyError(f"the {what} reply is JSON but not an object: {_excerpt(body)!r}")
    return data


def parse_halachot(reply: str, decision_text: str) -> ParsedReply:
    """Validate a reply against the schema and the decision text.

    Raises ``ReplyError`` when the reply as a whole is unusable (not JSON, no ``halachot`` list).
    Single bad items (empty rule, wrong types, a quote not in the text) are rejected, counted and
    described in ``problems``; the good ones are kept.
    """
    data = load_json_object(reply, what="halachot")
    items = data.get("halachot")
    if not isinstance(items, list):
        raise ReplyError(
            f'the reply has no "halachot" list (keys: {", ".join(sorted(data)) or "none"})'
        )
    parsed = ParsedReply(halachot=[])
    extra = sorted(set(data) - {"halachot"})
    if extra:
        parsed.problems.append(f"ignored unexpected keys: {', '.join(extra)}")
    decision = grounding.Decision(decision_text)
    for index, item in enumerate(items, 1):
        problem = _item_problem(item)
        grounded = None if problem else decision.ground(item["quote"])
        if grounded is None and not problem:
            problem = ("the quote does not occur in the decision, verbatim or by the grounding "
                       f"ladder: {_excerpt(item['quote'])!r}")
        if problem or grounded is None:
            parsed.rejected += 1
            parsed.problems.append(f"halacha {index} rejected: {problem}")
            continue
        topics = []
        for topic in item.get("topics") or []:
            topic = topic.strip()
            if topic and topic not in topics:
                topics.append(topic)
        parsed.halachot.append(
            ExtractedHalacha(
                rule=item["rule"].strip(), quote=grounded.text, topics=topics[:MAX_TOPICS],
                quote_spans=[list(span) for span in grounded.spans],
                grounding=grounded.tier.label,
            )
        )
    return parsed


def _item_problem(item) -> str:
    if not isinstance(item, dict):
        return f"not an object but {type(item).__name__}"
    rule, quote, topics = item.get("rule"), item.get("quote"), item.get("topics", [])
    if not isinstance(rule, str) or not rule.strip():
        return "the rule is missing or empty"
    if not isinstance(quote, str) or not quote.strip():
        return "the quote is missing or empty"
    if topics is not None and (
        not isinstance(topics, list) or not all(isinstance(t, str) for t in topics)
    ):
        return "topics must be a list of strings"
    return ""


@dataclass
class ParsedMetadata:
    court: str | None
    case_number: str | None
    decided_on: date | None
    judges: list[str]
    parties: list[str]


def _opt_str(data: dict, key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ReplyError(f'"{key}" in the metadata reply must be a string or null')
    return value.strip() or None


def _str_list(data: dict, key: str) -> list[str]:
    value = data.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ReplyError(f'"{key}" in the metadata reply must be a list of strings')
    result: list[str] = []
    for v in value:
        v = v.strip()
        if v and v not in result:
            result.append(v)
    return result


def parse_metadata(reply: str) -> ParsedMetadata:
    data = load_json_object(reply, what="metadata")
    decided = _opt_str(data, "decided_on")
    decided_on = None
    if decided:
        try:
            decided_on = date.fromisoformat(decided)
        except ValueError:
            raise ReplyError(f'"decided_on" {decided!r} is not a YYYY-MM-DD date') from None
    return ParsedMetadata(
        court=_opt_str(data, "court"),
        case_number=_opt_str(data, "case_number"),
        decided_on=decided_on,
        judges=_str_list(data, "judges"),
        parties=_str_list(data, "parties"),
    )


# --- results ----------------------------------------------------------------------------------


def halachot_result(
    reply: str, decision, *, raw: Any, usage: dict[str, Any], extractor: str, model: str,
    quota: QuotaSignal | None = None,
) -> ExtractionResult:
    """Validate a paid-for halachot ``reply`` against ``decision`` and build the result.

    A reply that cannot be used raises ``ReplyError`` carrying ``raw`` and ``usage``, so the
    runtime records what the call cost even though it produced nothing.
    """
    usage = with_model_usage(usage, model)
    quota = quota or QuotaSignal()
    try:
        parsed = parse_halachot(reply, decision.text)
    except ExtractionError as exc:
        exc.raw, exc.usage, exc.quota = raw, usage, quota
        raise
    usage = _with_quote_counts(usage, model, parsed.quote_counts())
    return ExtractionResult(
        halachot=parsed.halachot,
        usage=usage,
        raw=raw,
        rejected=parsed.rejected,
        extractor=extractor,
        model=model,
        problems=parsed.problems,
        quota=quota,
    )


def _with_quote_counts(usage: dict[str, Any], model: str, counts: dict[str, int]) -> dict[str, Any]:
    """``usage`` with the quotes' tiers counted on the model's entry of ``model_usage`` (summed
    per run like its tokens). A call with no model entry (offline) counts nothing there."""
    models = usage.get("model_usage")
    if not counts or not isinstance(models, dict) or not models:
        return usage
    name = model if model in models else next(iter(models))
    entry = dict(models[name])
    for key, value in counts.items():
        entry[key] = entry.get(key, 0) + value
    return dict(usage, model_usage=dict(models, **{name: entry}))


def metadata_result(
    reply: str, *, raw: Any, usage: dict[str, Any], extractor: str, model: str,
    quota: QuotaSignal | None = None,
) -> MetadataResult:
    """Validate a paid-for metadata ``reply`` and build the result (same contract as above)."""
    usage = with_model_usage(usage, model)
    quota = quota or QuotaSignal()
    try:
        parsed = parse_metadata(reply)
    except ExtractionError as exc:
        exc.raw, exc.usage, exc.quota = raw, usage, quota
        raise
    return MetadataResult(
        court=parsed.court,
        case_number=parsed.case_number,
        decided_on=parsed.decided_on,
        judges=parsed.judges,
        parties=parsed.parties,
        usage=usage,
        raw=raw,
        extractor=extractor,
        model=model,
        quota=quota,
    )
