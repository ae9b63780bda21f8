"""What the grounding ladder keeps of the halachot a model was paid for, against exact matching,
and what it costs per quote as the decision grows.

The corpus is the project's sample decisions (halacha/samples), set as a court's text arrives:
lines wrapped at 72 characters, Hebrew abbreviations with the gershayim (ע״א), compounds with the
maqaf (בעל־הבית), English with curly quotes and a no-break space after "s." and "No.". The paid
halachot are the quotes the offline rules find in that text (each an exact slice of it); the
model's copy of each gets the variants models really write, drawn with a fixed seed: the line
breaks unwrapped (always: a model answers in one line), the gershayim and geresh as " and ',
the maqaf as -, curly quotes straight, the no-break space plain, and one quote in four joined to
the next one by "..." (a shortened quote). Kept = grounded to the decision's own text.

    .venv/bin/python bench/grounding.py [--seed 7] [--rounds 5]

Prints the share kept by exact matching (the baseline, measured in the same run) and by the
ladder, the ratio, the tiers that matched, then the time per quote for decisions of 10 k to
1 M characters (a quote found at the end, and one found nowhere: every tier's pass) and the time
per character, which stays flat if grounding is linear.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()  # the offline rules' module loads the model-call interface (no database is used)

from halacha.extractors.offline import find_rules  # noqa: E402
from halacha.grounding import Decision, Tier, ground  # noqa: E402

MAQAF, GERSHAYIM, GERESH, NBSP = "\u05be", "\u05f4", "\u05f3", "\u00a0"
HEBREW = "\u05d0-\u05ea"


def typeset(text: str, language: str) -> str:
    """The decision as a court's text arrives: wrapped lines and its own typography."""
    if language == "he":
        text = re.sub(rf"([{HEBREW}])\"([{HEBREW}])", rf"\1{GERSHAYIM}\2", text)
        text = re.sub(rf"([{HEBREW}])'", rf"\1{GERESH}", text)
        text = re.sub(rf"([{HEBREW}])-([{HEBREW}])", rf"\1{MAQAF}\2", text)
        text = re.sub(rf"\b(בעל|בית|אי|תת) ([{HEBREW}])", rf"\1{MAQAF}\2", text)
    else:
        text = re.sub(r'"([^"\n]{1,80})"', "\u201c\\1\u201d", text)
        text = re.sub(r"\b(s\.|No\.|para\.) ", rf"\1{NBSP}", text)
    paragraphs = text.split("\n")
    return "\n".join(textwrap.fill(p, 72) if len(p) > 72 else p for p in paragraphs)


def copied_by_a_model(quote: str, rng: random.Random) -> str:
    """What a model writes for ``quote``: each variant drawn on its own (a model mostly answers
    in one line, and mostly, not always, in plain typography)."""
    copy = quote
    if rng.random() < 0.8:
        copy = re.sub(r"\s*\n\s*", " ", copy)
    if rng.random() < 0.5:
        copy = copy.replace(GERSHAYIM, '"').replace(GERESH, "'")
    if rng.random() < 0.5:
        copy = copy.replace(MAQAF, "-")
    if rng.random() < 0.5:
        copy = copy.replace("\u201c", '"').replace("\u201d", '"')
    if rng.random() < 0.5:
        copy = copy.replace(NBSP, " ")
    return copy


def corpus() -> list[tuple[str, str]]:
    """(the sample's own text, the same decision as a court's text arrives) per sample."""
    decisions = []
    for name in ("decisions-en.jsonl", "decisions-he.jsonl"):
        for line in (ROOT / "halacha" / "samples" / name).read_text().splitlines():
            record = json.loads(line)
            decisions.append((record["text"], typeset(record["text"], record.get("language", "en"))))
    return decisions


def _as_typeset(quote: str, text: str) -> str | None:
    """Where ``quote`` (found in the sample's own text) is in the typeset text: its slice there."""
    pattern = re.escape(quote)
    for plain, typeset_as in ((r"\ ", r"\s+"), ('"', '["\u05f4\u201c\u201d]'),
                              ("'", "['\u05f3]"), (r"\-", "[-\u05be]")):
        pattern = pattern.replace(plain, typeset_as)
    found = re.search(pattern, text)
    return found.group() if found else None


def paid_quotes(rng: random.Random) -> list[tuple[str, str]]:
    """(decision text as it arrives, the model's copy) for every halacha the offline rules find:
    a quote is the passage as it stands in the decision (wrapped, in its typography)."""
    pairs = []
    for own, text in corpus():
        quotes = [q for q in (_as_typeset(rule["quote"], text) for rule in find_rules(own)) if q]
        i = 0
        while i < len(quotes):
            if i + 1 < len(quotes) and rng.random() < 0.25:  # a shortened quote of two passages
                first, second = quotes[i], quotes[i + 1]
                pairs.append((text, copied_by_a_model(first, rng) + " ... "
                              + copied_by_a_model(second, rng)))
                i += 2
                continue
            pairs.append((text, copied_by_a_model(quotes[i], rng)))
            i += 1
    return pairs


def kept(pairs) -> tuple[int, int, Counter]:
    exact = sum(copy.strip() in text for text, copy in pairs)
    tiers: Counter = Counter()
    for text, copy in pairs:
        grounded = ground(copy, text)
        tiers[grounded.tier.label if grounded else "rejected"] += 1
    return exact, len(pairs) - tiers["rejected"], tiers


def per_quote_seconds(size: int, rounds: int) -> tuple[float, float]:
    """Median seconds to ground a quote found at the end of a ``size``-character decision, and
    one found nowhere (a fresh Decision each time: its normalised forms are made anew)."""
    _own, text = corpus()[-1]
    body = (text + "\n") * (size // (len(text) + 1) + 1)
    body = body[:size]
    tail = body[-300:-200]
    late_copy = re.sub(r"\s+", " ", tail).strip()
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
    pairs = paid_quotes(random.Random(args.seed))
    exact, laddered, tiers = kept(pairs)
    n = len(pairs)
    print(f"paid halachot: {n} (from {len(corpus())} decisions, seed {args.seed})")
    print(f"kept by exact matching (baseline): {exact}/{n} = {exact / n:.1%}")
    print(f"kept by the grounding ladder:      {laddered}/{n} = {laddered / n:.1%}"
          f"  ({laddered / max(exact, 1):.2f}x the baseline)")
    order = [t.label for t in Tier] + ["rejected"]
    print("tiers: " + ", ".join(f"{t} {tiers[t]}" for t in order if tiers[t]))
    print("time per quote (median):")
    per_char = []
    for size in (10_000, 100_000, 1_000_000):
        found, missed = per_quote_seconds(size, args.rounds)
        per_char.append(missed / size)
        print(f"  {size:>9,} chars: found at the end {found * 1000:8.1f} ms, "
              f"found nowhere {missed * 1000:8.1f} ms ({missed / size * 1e9:.0f} ns/char)")
    print(f"ns per character, 1 M against 10 k: {per_char[-1] / per_char[0]:.2f}x (1.00 = linear)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
