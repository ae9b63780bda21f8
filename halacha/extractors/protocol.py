"""The protocol with the model: the validation of every reply, and the results built from it
(the prompts and JSON schemas are halacha/extractors/prompts.py).

All three backends go through here, so a rule is accepted or rejected the same way whoever
produced it: the reply must be ``{"halachot": [{"rule", "quote", "topics"}]}`` (a Markdown code
fence around it is tolerated), every rule non-empty, and every quote must occur verbatim in the
decision text. A rule whose quote does not is rejected and counted, never stored as if good.

The backends that call a model (anthropic, claude-cli) build their results here as well
(``halachot_result``, ``metadata_result``), so a paid-for reply that fails validation carries its
raw reply and usage the same way from either, and each result's usage names the model it was spent
on (``model_usage``, summed per run by the drain runtime).

This module never calls a model and never touches the database.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from halacha.extractors.base import (
    ExtractedHalacha,
    ExtractionError,
    ExtractionResult,
    MetadataResult,
    empty_usage,
)

MAX_TOPICS = 8
PROBLEM_EXCERPT = 120

# --- reply validation -------------------------------------------------------------------------


class ReplyError(ExtractionError):
    """The model's reply is not the JSON asked for; the reply (and its cost) is attached."""


@dataclass
class ParsedReply:
    halachot: list[ExtractedHalacha]
    rejected: int = 0
    problems: list[str] = field(default_factory=list)


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
    for index, item in enumerate(items, 1):
        problem = _item_problem(item, decision_text)
        if problem:
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
                rule=item["rule"].strip(), quote=item["quote"].strip(), topics=topics[:MAX_TOPICS]
            )
        )
    return parsed


def _item_problem(item, decision_text: str) -> str:
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
    if quote.strip() not in decision_text:
        return f"the quote does not occur verbatim in the decision: {_excerpt(quote)!r}"
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


def usage_from(reported: Any, *, cost_usd: Any = None) -> dict[str, Any]:
    """The usage keys every backend reports, read from a mapping (the CLI's JSON) or an object
    (the SDK's ``Usage``); anything missing or unreadable counts 0. ``cost_usd`` is kept when the
    backend states one (the CLI's ``total_cost_usd``)."""
    usage = empty_usage()
    for key in usage:
        value = reported.get(key) if isinstance(reported, dict) else getattr(reported, key, 0)
        try:
            usage[key] = int(value or 0)
        except (TypeError, ValueError):
            usage[key] = 0
    if isinstance(cost_usd, int | float) and not isinstance(cost_usd, bool):
        usage["cost_usd"] = float(cost_usd)
    return usage


def with_model_usage(usage: dict[str, Any], model: str) -> dict[str, Any]:
    """``usage`` with ``model_usage`` (model -> calls, tokens, cost) when the backend gave none.

    The drain runtime sums ``model_usage`` onto the run, so the page and the admin can say which
    model a run spent its quota on.
    """
    if model and "model_usage" not in usage:
        spent = {key: value for key, value in usage.items() if key != "model_usage"}
        usage = dict(usage, model_usage={model: {"calls": 1, **spent}})
    return usage


def halachot_result(
    reply: str, decision, *, raw: Any, usage: dict[str, Any], extractor: str, model: str
) -> ExtractionResult:
    """Validate a paid-for halachot ``reply`` against ``decision`` and build the result.

    A reply that cannot be used raises ``ReplyError`` carrying ``raw`` and ``usage``, so the
    runtime records what the call cost even though it produced nothing.
    """
    usage = with_model_usage(usage, model)
    try:
        parsed = parse_halachot(reply, decision.text)
    except ExtractionError as exc:
        exc.raw, exc.usage = raw, usage
        raise
    return ExtractionResult(
        halachot=parsed.halachot,
        usage=usage,
        raw=raw,
        rejected=parsed.rejected,
        extractor=extractor,
        model=model,
        problems=parsed.problems,
    )


def metadata_result(
    reply: str, *, raw: Any, usage: dict[str, Any], extractor: str, model: str
) -> MetadataResult:
    """Validate a paid-for metadata ``reply`` and build the result (same contract as above)."""
    usage = with_model_usage(usage, model)
    try:
        parsed = parse_metadata(reply)
    except ExtractionError as exc:
        exc.raw, exc.usage = raw, usage
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
    )
