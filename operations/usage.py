"""The quota usage of a week in the snapshot's and the digest's words and shape
(``drains.selectors.usage`` reads it)."""

from __future__ import annotations

from drains.clock import format_local
from drains.selectors.usage import Produced, QuotaWeekUsage
from drains.wording import plural
from operations.snapshot_types import UsageEntry


def _tokens(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f} M"
    if n >= 1_000:
        return f"{n / 1_000:.1f} k"
    return str(n)


def usage_text(u: QuotaWeekUsage) -> str:
    """``this week: 412 items, 1.3 M input tokens, $18.20; 455 records at $0.04 each``."""
    when = "this week" if u.current else f"week to {format_local(u.week.end, '%a %d %b')}"
    text = f"{when}: {u.items_done} items, {_tokens(u.input_tokens)} input tokens, ${u.cost_usd:.2f}"
    if u.refused_calls:
        text += f", {u.refused_calls} refused call{'s' if u.refused_calls != 1 else ''}"
    made = [_produced_text(p) for p in u.products]
    return text + ("; " + ", ".join(made) if made else "")


def _produced_text(p: Produced) -> str:
    each = p.cost_each
    return plural(p.count, p.singular, p.product) + (
        f" at ${each:.2f} each" if each is not None else "")


def usage_entry(u: QuotaWeekUsage) -> UsageEntry:
    """One quota key's week, as the snapshot's ``usage`` lists it."""
    return {
        "quota_key": u.quota_key,
        "week_start": u.week.start,
        "week_end": u.week.end,
        "current": u.current,
        "runs": u.runs,
        "input_tokens": u.input_tokens,
        "output_tokens": u.output_tokens,
        "cache_creation_input_tokens": u.cache_creation_input_tokens,
        "cache_read_input_tokens": u.cache_read_input_tokens,
        "cost_usd": float(round(u.cost_usd, 6)),
        "calls": u.calls,
        "refused_calls": u.refused_calls,
        "items_done": u.items_done,
        "items_failed": u.items_failed,
        "products": [
            {"drain": p.drain, "product": p.product, "count": p.count,
             "cost_usd": float(round(p.cost_usd, 6)),
             "cost_each": None if p.cost_each is None else float(round(p.cost_each, 6))}
            for p in u.products
        ],
        "text": usage_text(u),
    }
