"""Input tokens saved by prompt caching in the ``anthropic`` backend: caching on against off.

N sample decisions (halacha/samples, English and Hebrew alternating) go through the real backend
(``ask_halachot(AnthropicExtractor(), decision)``, the official SDK over HTTP) against the local Messages API
stub, which reports usage as the API does with prompt caching (tests/support/anthropic_stub.py:
the first call with a cache_control'd prefix writes it, later calls with the same exact prefix
read it; tokens estimated as characters / 4; nothing cached below ``--min-cacheable``). Each
mode gets a fresh stub, so its cache starts empty, as after five idle minutes:

- off (the baseline): the setting HALACHA_PROMPT_CACHE = False, no cache_control, the whole prompt at full price;
- on: HALACHA_PROMPT_CACHE = True (the default).

It prints, per mode: the input tokens billed at the full price, the cache writes (billed at
1.25x) and reads (0.1x), and the input cost in full-price-token equivalents; then the ratios on /
off. The same calls carry the same total input either way; what changes is how it is billed.
The saving applies only while the prompt is at least the model's minimum cacheable length:
``--min-cacheable 2048`` shows a model (or the reported Sonnet 4.6 behaviour) for which the
extraction prompt is too short, where caching saves nothing. No model is called.

    .venv/bin/python bench/prompt_cache.py [--decisions 20] [--min-cacheable 1024]
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402

from halacha.extractors.anthropic_api import AnthropicExtractor  # noqa: E402
from halacha.extractors.prompts import SYSTEM_PROMPT  # noqa: E402
from halacha.extractors.protocol import ask_halachot  # noqa: E402
from halacha.models import CourtDecision  # noqa: E402
from tests.support.anthropic_stub import AnthropicStub, estimate_tokens  # noqa: E402

FIELDS = ("external_id", "court", "case_number", "title", "text", "language")
KEYS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
WRITE_PRICE, READ_PRICE = 1.25, 0.1  # of the base input price (5-minute cache)


def sample_decisions(count: int) -> list[CourtDecision]:
    """The first ``count`` sample decisions, English and Hebrew alternating (never saved)."""
    files = [ROOT / "halacha" / "samples" / f"decisions-{lang}.jsonl" for lang in ("en", "he")]
    lists = [
        [json.loads(line) for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
        for f in files
    ]
    pairs = itertools.zip_longest(*lists)
    mixed = [record for pair in pairs for record in pair if record is not None]
    if count > len(mixed):
        sys.exit(f"only {len(mixed)} sample decisions; ask for --decisions {len(mixed)} or fewer")
    decisions = []
    for record in mixed[:count]:
        fields = {key: record[key] for key in FIELDS if record.get(key)}
        fields.setdefault("language", "he" if "-he-" in record["external_id"] else "en")
        decisions.append(CourtDecision(**fields))
    return decisions


def run(decisions: list[CourtDecision], *, cache: bool, min_cacheable: int) -> dict[str, float]:
    """Every decision through the backend against a fresh stub; the usage summed."""
    settings.HALACHA_PROMPT_CACHE = cache
    totals = dict.fromkeys(KEYS, 0)
    with AnthropicStub(prompt_cache=True, min_cacheable_tokens=min_cacheable) as stub:
        os.environ["ANTHROPIC_BASE_URL"] = stub.url
        extractor = AnthropicExtractor()
        for decision in decisions:
            stub.reply(json.dumps({"halachot": []}))
            usage = ask_halachot(extractor, decision).usage
            for key in KEYS:
                totals[key] += usage[key]
        marked = sum("cache_control" in r.body["system"][0] for r in stub.messages())
    if marked != (len(decisions) if cache else 0):
        sys.exit(f"caching {'on' if cache else 'off'}: {marked} of {len(decisions)} calls marked")
    totals["calls"] = len(decisions)
    totals["all_input"] = sum(totals[key] for key in KEYS)
    totals["cost"] = (
        totals["input_tokens"]
        + WRITE_PRICE * totals["cache_creation_input_tokens"]
        + READ_PRICE * totals["cache_read_input_tokens"]
    )
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=20)
    parser.add_argument("--min-cacheable", type=int, default=1024,
                        help="the model's minimum cacheable prompt length in tokens (Sonnet: 1024)")
    args = parser.parse_args()
    if args.decisions < 1:
        sys.exit("--decisions must be at least 1")
    settings.ANTHROPIC_API_KEY = "sk-ant-bench"
    logging.getLogger("httpx2").setLevel(logging.WARNING)  # one INFO line per request otherwise
    os.environ.pop("ANTHROPIC_AUTH_TOKEN", None)
    decisions = sample_decisions(args.decisions)

    prompt = estimate_tokens(SYSTEM_PROMPT)
    print(f"system prompt: {len(SYSTEM_PROMPT)} chars, ~{prompt} tokens (chars/4); "
          f"minimum cacheable: {args.min_cacheable} -> "
          f"{'cacheable' if prompt >= args.min_cacheable else 'TOO SHORT, nothing is cached'}")
    off = run(decisions, cache=False, min_cacheable=args.min_cacheable)
    on = run(decisions, cache=True, min_cacheable=args.min_cacheable)

    print(f"{'':28}{'off (baseline)':>16}{'on':>12}")
    rows = [
        ("calls", "calls"),
        ("input at full price", "input_tokens"),
        ("cache writes (1.25x)", "cache_creation_input_tokens"),
        ("cache reads (0.1x)", "cache_read_input_tokens"),
        ("all input tokens", "all_input"),
        ("input cost, full-price tok", "cost"),
    ]
    for label, key in rows:
        print(f"{label:28}{off[key]:>16,.0f}{on[key]:>12,.0f}")
    full_ratio = on["input_tokens"] / off["input_tokens"]
    cost_ratio = on["cost"] / off["cost"]
    print(f"full-price input tokens on / off: {full_ratio:.3f} "
          f"(saved {1 - full_ratio:.1%} of the input tokens billed at full price)")
    print(f"input cost on / off: {cost_ratio:.3f} (saved {1 - cost_ratio:.1%}, writes and reads "
          "priced in)")


if __name__ == "__main__":
    main()
