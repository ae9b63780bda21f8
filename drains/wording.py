"""Counts and rates in words for people: ``1 run``, ``2 runs``, ``≈1.6 M per hour``.

Only formatting; times are drains/clock.py's. Machine output (the API, metrics, JSON) keeps
exact numbers.
"""

from __future__ import annotations

IRREGULAR = {"is": "are", "was": "were"}  # a product's plural is its drain's (product_names)


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 run``, ``0 runs``, ``2 entries`` with ``many="entries"`` (when it is not word + s)."""
    if n == 1:
        return f"{n} {word}"
    return f"{n} {many or IRREGULAR.get(word) or word + 's'}"


def rounded(value: float) -> str:
    """A quantity rounded for reading: ``0.42``, ``7.5``, ``38``, ``1,240``, ``12 k``, ``1.6 M``."""
    if value <= 0:
        return "0"
    if value < 1:
        return f"{value:.2f}"
    if value < 10:
        return f"{value:.1f}"
    if value < 10_000:
        return f"{round(value):,}"
    if value < 1_000_000:
        return f"{round(value / 1000):,} k"
    return f"{value / 1_000_000:.1f} M"


def per_hour(rate: float) -> str:
    """``38 per hour``; ``none per hour`` at zero."""
    return f"{rounded(rate)} per hour" if rate > 0 else "none per hour"
