"""What the grounding ladder keeps of the halachot a model was paid for, against exact matching,
and what it costs per quote as the decision grows.

The corpus is the gold set (halacha/gold, docs/quality.md "The gold set"): decisions written as a
court's text arrives, with wrapped lines, gershayim, geresh and maqaf, a few pointed words,
curly quotes, em dashes, no-break spaces and a right-to-left mark or two. Each gold halacha's
quote is an exact slice of its decision; a paid halacha is that quote as a model copies it,
drawn with a fixed seed: the line breaks unwrapped 4 times in 5 (a model mostly answers in one
line), and each of these 1 time in 2: the gershayim and geresh as " and ', the maqaf as -,
curly quotes and apostrophes straight, dashes as -, the no-break space plain, the points
(niqqud) dropped, the bidirectional marks dropped; and one quote in four shortened to its first
and last thirds joined by "...". Kept = grounded to the decision's own text; "at the gold
passage" scores the kept spans against the gold by halacha.gold.score (one to one, by overlap).
Then each variant alone, on every gold quote it changes.

    .venv/bin/python bench/grounding.py [--seed 7] [--rounds 5]

Prints the share kept by exact matching (``quote.strip() in text``, the baseline, measured in
the same run) and by the ladder, the ratio, the tiers that matched and the score at the gold
passages; the same per variant; then the time per quote for decisions of 10 k to 1 M characters
(the longest Hebrew gold decision repeated; a quote found at the end, and one found nowhere:
every tier's pass) and the time per character, which stays flat if grounding is linear.
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from halacha.gold import GoldDecision, Score, load, score  # noqa: E402
from halacha.grounding import Decision, Tier  # noqa: E402

GERSHAYIM, GERESH, MAQAF, NBSP = "\u05f4", "\u05f3", "\u05be", "\u00a0"
POINTS = re.compile("[\u0591-\u05bd\u05bf\u05c1\u05c2\u05c4\u05c5\u05c7]")
BIDI = re.compile("[\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _unwrap(quote: str) -> str:
    return re.sub(r"\s*\n\s*", " ", quote)


# (what a model does to the quote, how often, the change); the order is the order applied
VARIANTS: list[tuple[str, float, Callable[[str], str]]] = [
    ("line breaks as spaces", 0.8, _unwrap),
    ("gershayim and geresh as \" and '", 0.5,
     lambda q: q.replace(GERSHAYIM, '"').replace(GERESH, "'")),
    ("maqaf as -", 0.5, lambda q: q.replace(MAQAF, "-")),
    ("curly quotes straight", 0.5,
     lambda q: re.sub("[\u201c\u201d]", '"', re.sub("[\u2018\u2019]", "'", q))),
    ("dashes as -", 0.5, lambda q: re.sub("[\u2013\u2014]", "-", q)),
    ("no-break space plain", 0.5, lambda q: q.replace(NBSP, " ")),
    ("points (niqqud) dropped", 0.5, lambda q: POINTS.sub("", q)),
    ("bidi marks dropped", 0.5, lambda q: BIDI.sub("", q)),
]
SHORTENED = 0.25  # one quote in four cut to its first and last thirds, joined by "..."


def shortened(copy: str) -> str:
    """The first and last thirds of ``copy``, cut at spaces and joined by "..." (the copy
    itself when it is too short to cut)."""
    spaces = [m.start() for m in re.finditer(r"\s+", copy)]
    first = next((at for at in spaces if at >= len(copy) / 3), None)
    last = next((at for at in reversed(spaces) if at <= 2 * len(copy) / 3), None)
    if first is None or last is None or last <= first:
        return copy
    return copy[:first].rstrip() + " ... " + copy[last:].strip()


def copied_by_a_model(quote: str, rng: random.Random) -> str:
    """What a model writes for ``quote``: each variant drawn on its own."""
    copy = quote
    for _name, often, change in VARIANTS:
        if rng.random() < often:
            copy = change(copy)
    if rng.random() < SHORTENED:
        copy = shortened(copy)
    return copy


Paid = list[tuple[GoldDecision, list[str]]]  # each decision with a model's copy of each quote


def measure(paid: Paid) -> tuple[int, int, Counter[str], Score, Score]:
    """(kept by exact matching, kept by the ladder, the ladder's tiers, exact matching's score
    at the gold passages, the ladder's)."""
    exact = laddered = 0
    tiers: Counter[str] = Counter()
    exact_score = ladder_score = Score()
    for decision, copies in paid:
        text, grounding = decision.text, Decision(decision.text)
        exact_spans, ladder_spans = [], []
        for copy in copies:
            if copy.strip() in text:
                exact += 1
                at = text.find(copy.strip())
                exact_spans.append([(at, at + len(copy.strip()))])
            grounded = grounding.ground(copy)
            tiers[grounded.tier.label if grounded else "rejected"] += 1
            if grounded:
                laddered += 1
                ladder_spans.append(list(grounded.spans))
        exact_score += score(decision.spans, exact_spans)
        ladder_score += score(decision.spans, ladder_spans)
    return exact, laddered, tiers, exact_score, ladder_score


def _tiers(tiers: Counter[str]) -> str:
    order = [t.label for t in Tier] + ["rejected"]
    return ", ".join(f"{t} {tiers[t]}" for t in order if tiers[t])


def report_drawn(gold: list[GoldDecision], seed: int) -> None:
    rng = random.Random(seed)
    paid = [(d, [copied_by_a_model(h.quote, rng) for h in d.halachot]) for d in gold]
    n = sum(len(copies) for _d, copies in paid)
    exact, laddered, tiers, exact_score, ladder_score = measure(paid)
    languages = Counter(d.language for d in gold)
    print(f"paid halachot: {n} (the gold set: {len(gold)} decisions, {languages['he']} Hebrew, "
          f"{languages['en']} English; seed {seed})")
    print(f"kept by exact matching (baseline): {exact}/{n} = {exact / n:.1%}")
    print(f"kept by the grounding ladder:      {laddered}/{n} = {laddered / n:.1%}"
          f"  ({laddered / max(exact, 1):.2f}x the baseline)")
    print(f"tiers: {_tiers(tiers)}")
    for name, result in (("exact matching", exact_score), ("the ladder", ladder_score)):
        print(f"at the gold passage, {name}: P {result.precision:.2f}, R {result.recall:.2f}, "
              f"F1 {result.f1:.2f}")


def report_each_variant(gold: list[GoldDecision]) -> None:
    print("each variant alone, on the gold quotes it changes:")
    variants = [(name, change) for name, _often, change in VARIANTS]
    variants.append(('shortened with "..." (first and last thirds)', shortened))
    for name, change in variants:
        paid = [(d, [change(h.quote) for h in d.halachot if change(h.quote) != h.quote])
                for d in gold]
        n = sum(len(copies) for _d, copies in paid)
        exact, laddered, tiers, _exact_score, ladder_score = measure(
            [(d, copies) for d, copies in paid if copies])
        print(f"  {name:<46} {n:>3} quotes: exact keeps {exact:>3}, the ladder {laddered:>3} "
              f"({_tiers(tiers)})")


def per_quote_seconds(text: str, size: int, rounds: int) -> tuple[float, float]:
    """Median seconds to ground a quote found at the end of a ``size``-character decision, and
    one found nowhere (a fresh Decision each time: its normalised forms are made anew)."""
    body = ((text + "\n") * (size // (len(text) + 1) + 1))[:size]
    words = body[-300:-200].split()[1:-1]  # whole words only
    late_copy = " ".join(words)
    nowhere = "ההלכה הזאת אינה מופיעה בשום מקום בפסק הדין הזה ולא תימצא"
    found, missed = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        assert Decision(body).ground(late_copy) is not None
        found.append(time.perf_counter() - started)
        started = time.perf_counter()
        assert Decision(body).ground(nowhere) is None
        missed.append(time.perf_counter() - started)
    return statistics.median(found), statistics.median(missed)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=7, help="the variants' seed (default 7)")
    parser.add_argument("--rounds", type=int, default=5, help="timing rounds per size (default 5)")
    args = parser.parse_args()
    gold = load()
    report_drawn(gold, args.seed)
    report_each_variant(gold)
    longest = max((d for d in gold if d.language == "he"), key=lambda d: len(d.text))
    print(f"time per quote (median; {longest.id} repeated):")
    per_char = []
    for size in (10_000, 100_000, 1_000_000):
        found, missed = per_quote_seconds(longest.text, size, args.rounds)
        per_char.append(missed / size)
        print(f"  {size:>9,} chars: found at the end {found * 1000:8.1f} ms, "
              f"found nowhere {missed * 1000:8.1f} ms ({missed / size * 1e9:.0f} ns/char)")
    print(f"ns per character, 1 M against 10 k: {per_char[-1] / per_char[0]:.2f}x (1.00 = linear)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
