"""Which limit a rate-limit signal reports (``LimitKind``), read from the same signals the
reset parser reads (drains/quota/resets.py): the CLI's text forms, its JSON and stream-json objects,
the API's bodies, and the API's status and headers. ``describe_kind`` is how a kind reads for an
operator, wherever it is shown.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import models

from drains.clock import short_time


def weekly_limit_message(*, kind: Kind, reset_at: datetime, burst_until: datetime) -> str:
    what = (
        f"weekly limit of {kind.model}"
        if kind.kind == LimitKind.WEEKLY_MODEL and kind.model
        else "weekly limit"
    )
    return (
        f"{what} reached; it resets {short_time(reset_at)}, after the burst deadline "
        f"{short_time(burst_until)}: the burst ended early"
    )


class LimitKind(models.TextChoices):
    """Which limit a signal reports: they call for different handling (a session limit passes
    within hours, a weekly one may outlast the burst, a spend cap is money, a per-minute API
    limit clears in seconds, an overload is no limit at all)."""

    SESSION = "session", "5-hour session limit"
    WEEKLY = "weekly", "weekly limit (all models)"
    WEEKLY_MODEL = "weekly_model", "weekly limit of one model"
    EXTRA_USAGE = "extra_usage", "extra usage exhausted"
    SPEND_CAP = "spend_cap", "API spend limit"
    API_REQUESTS = "api_requests", "API requests per minute"
    API_INPUT_TOKENS = "api_input_tokens", "API input tokens per minute"
    API_OUTPUT_TOKENS = "api_output_tokens", "API output tokens per minute"
    OVERLOADED = "overloaded", "API overloaded (HTTP 529)"
    UNKNOWN = "unknown", "limit of unknown kind"
    # Not a limit: the host or the service failed (drains/runner/plugin.py HostFault). It takes
    # the backoff's path (no call until a probe works), on a capped, doubling interval.
    HOST_FAULT = "host_fault", "blocked by a host fault"


@dataclass(frozen=True)
class Kind:
    kind: str = LimitKind.UNKNOWN
    model: str = ""  # for weekly_model: the model family the limit is on, e.g. "opus"


# The subscription windows as the CLI's stream-json (rateLimitType) and the unified headers
# (representative-claim) name them.
_WINDOWS = {"five_hour": LimitKind.SESSION, "seven_day": LimitKind.WEEKLY,
            "overage": LimitKind.EXTRA_USAGE}
_WINDOW_MODEL_RE = re.compile(r"^seven_day_(?P<model>[a-z0-9]+)$")
# The text forms, most specific first.
_KIND_TEXT = (
    (re.compile(r"specified API usage limits|regain access on", re.I), LimitKind.SPEND_CAP),
    (re.compile(r"out of extra usage|extra usage limit", re.I), LimitKind.EXTRA_USAGE),
    (re.compile(r"\b(?P<model>opus|sonnet|haiku)\s+weekly limit", re.I), LimitKind.WEEKLY_MODEL),
    (re.compile(r"\bweekly limit", re.I), LimitKind.WEEKLY),
    (re.compile(r"5-hour limit|\bsession limit", re.I), LimitKind.SESSION),
    (re.compile(r"overloaded", re.I), LimitKind.OVERLOADED),
)


def describe_kind(kind: str, model: str = "") -> str:
    """How a stored kind reads for an operator: "weekly limit of opus", "5-hour session limit"."""
    if not kind:
        return ""
    if kind == LimitKind.WEEKLY_MODEL and model:
        return f"weekly limit of {model}"
    try:
        return str(LimitKind(kind).label)
    except ValueError:
        return kind


def limit_verb(kind: str) -> str:
    """What a backoff of ``kind`` does to a drain, in the words every surface uses."""
    return "blocked" if kind == LimitKind.HOST_FAULT else "rate limited"


def window_kind(window: str | None) -> Kind:
    """The kind of a subscription window name (``five_hour``, ``seven_day_opus``, …)."""
    name = (window or "").strip().lower()
    if name in _WINDOWS:
        return Kind(_WINDOWS[name])
    if match := _WINDOW_MODEL_RE.match(name):
        return Kind(LimitKind.WEEKLY_MODEL, match["model"])
    return Kind()


def classify_text(text: str) -> Kind:
    """The kind a CLI text, a CLI JSON or stream-json object, or an API error body reports."""
    raw = (text or "").strip()
    if raw.startswith("{"):
        try:
            obj = json.loads(raw)
        except ValueError:
            obj = None
        if isinstance(obj, dict):
            return _classify_object(obj)
    for pattern, kind in _KIND_TEXT:
        if match := pattern.search(raw):
            model = match.groupdict().get("model") or ""
            return Kind(kind, model.lower())
    return Kind()


def _classify_object(obj: dict[str, Any]) -> Kind:
    info = obj.get("rate_limit_info")
    if obj.get("type") == "rate_limit_event" and isinstance(info, dict):
        return window_kind(info.get("rateLimitType"))
    found = obj.get("error")
    error: dict[str, Any] = found if isinstance(found, dict) else {}
    if obj.get("api_error_status") == 529 or "overloaded" in str(
        obj.get("api_error_type") or error.get("type") or ""
    ):
        return Kind(LimitKind.OVERLOADED)
    inner = obj.get("result") if isinstance(obj.get("result"), str) else error.get("message")
    return classify_text(inner) if isinstance(inner, str) else Kind()


def classify_headers(headers: Mapping[str, str] | None, *, status: int | None = None) -> Kind:
    """The kind an API response's status and headers report: 529 is an overload; a
    subscription's binding window; else which per-minute budget is exhausted."""
    if status == 529:
        return Kind(LimitKind.OVERLOADED)
    h = lower_headers(headers)
    claim = h.get("anthropic-ratelimit-unified-representative-claim")
    if claim:
        return window_kind(claim)
    for budget, kind in (
        ("requests", LimitKind.API_REQUESTS),
        ("input-tokens", LimitKind.API_INPUT_TOKENS),
        ("output-tokens", LimitKind.API_OUTPUT_TOKENS),
        ("tokens", LimitKind.API_INPUT_TOKENS),
    ):
        if h.get(f"anthropic-ratelimit-{budget}-remaining") == "0":
            return Kind(kind)
    return Kind()


def lower_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    if headers is None:
        return {}
    return {str(k).lower(): str(v).strip() for k, v in headers.items()}
