"""A run's token usage and cost, summed over its extractor calls (the keys extractors report),
and how it is added onto the run's row (``DrainRun``'s token columns, ``cost_usd`` and
``model_usage``, per model)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db.models import F

logger = logging.getLogger(__name__)

USAGE_TOKEN_KEYS = (
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
)


@dataclass
class Usage:
    """Token usage and cost summed over extractor calls (the keys extractors report)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    cost_usd: Decimal = field(default_factory=Decimal)
    # model -> {"calls", token keys, "cost_usd"}: the extractors' ``model_usage``, summed.
    models: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, usage: Mapping[str, Any] | None) -> None:
        if not usage:
            return
        if isinstance(usage.get("model_usage"), Mapping):
            self.models = merge_model_usage(self.models, usage["model_usage"])
        for key in USAGE_TOKEN_KEYS:
            value = usage.get(key)
            if value:
                setattr(self, key, getattr(self, key) + int(value))
        cost = usage.get("cost_usd")
        if cost:
            try:
                self.cost_usd += Decimal(str(cost))
            except InvalidOperation:
                logger.warning("ignoring an unreadable cost_usd %r in extractor usage", cost)

    def __bool__(self) -> bool:
        return (
            any(getattr(self, key) for key in USAGE_TOKEN_KEYS)
            or bool(self.cost_usd)
            or bool(self.models)
        )

    def run_updates(self, stored_models: Mapping[str, Any] | None) -> dict[str, Any]:
        """This usage added onto a run's row: the UPDATE's values for its token columns, its
        cost and its per-model usage (``stored_models``, the row's, plus these)."""
        values: dict[str, Any] = {}
        for key in USAGE_TOKEN_KEYS:
            if getattr(self, key):
                values[key] = F(key) + getattr(self, key)
        if self.cost_usd:
            values["cost_usd"] = F("cost_usd") + self.cost_usd
        if self.models:
            values["model_usage"] = merge_model_usage(stored_models or {}, self.models)
        return values


def merge_model_usage(total: Mapping[str, Any], more: Mapping[str, Any]) -> dict[str, Any]:
    """Per-model usage ``total`` plus ``more``, summed key by key (numbers only; cost rounded)."""
    merged = {model: dict(spent) for model, spent in total.items()}
    for model, spent in more.items():
        if not isinstance(spent, Mapping):
            continue
        entry = merged.setdefault(str(model), {})
        for key, value in spent.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                summed = entry.get(key, 0) + value
                entry[key] = round(summed, 6) if isinstance(summed, float) else summed
    return merged
