"""What each claude-cli call sends beyond the work: the old bare invocation against the lean one.

For 20 sample decisions (halacha/samples), in one run, through the real Claude CLI pinned in
package.json (``make claude-cli``), against the local Messages API stub that records each request:

- old (the baseline): ``claude -p --output-format json`` with the extraction prompt and the
  decision together on stdin, from the project folder, as the backend called it before;
- new: the claude-cli backend as it is (``ask_halachot(ClaudeCliExtractor(), decision)``).

Per call it reports the request's bytes, the overhead (bytes beyond the extraction prompt and the
decision text, as they sit JSON-escaped in the body), the share of the request that is the
decision itself, and the number of tools the request offered; then the ratios old / new.
Target: the new overhead is at most 3 KB per call.

Both run with the same isolated HOME and with the CLI's non-essential traffic off, so that only
the invocation differs; the stub is also the CLI's proxy, so a request to any other host would
be counted (as "other requests"). No model is called and nothing leaves the machine.

    .venv/bin/python bench/cli_overhead.py [--decisions 20]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402

from halacha.extractors.claude_cli import ClaudeCliExtractor  # noqa: E402
from halacha.extractors.prompts import SYSTEM_PROMPT, user_prompt  # noqa: E402
from halacha.extractors.protocol import ask_halachot  # noqa: E402
from halacha.models import CourtDecision  # noqa: E402
from tests.support.anthropic_stub import AnthropicStub  # noqa: E402
from tests.support.real_claude import CLAUDE, PINNED, isolated_env, json_size  # noqa: E402

TARGET_OVERHEAD = 3 * 1024
FIELDS = ("external_id", "court", "case_number", "title", "text", "language")


def sample_decisions(count: int) -> list[CourtDecision]:
    """The first ``count`` sample decisions, English and Hebrew alternating (never saved)."""
    files = [ROOT / "halacha" / "samples" / name for name in ("decisions-en.jsonl", "decisions-he.jsonl")]
    lists = [[json.loads(line) for line in f.read_text(encoding="utf-8").splitlines() if line.strip()] for f in files]
    mixed = [record for pair in zip(*lists, strict=False) for record in pair]
    decisions = []
    for record in mixed[:count]:
        fields = {key: record[key] for key in FIELDS if record.get(key)}
        fields.setdefault("language", "he" if "-he-" in record["external_id"] else "en")
        decisions.append(CourtDecision(**fields))
    if len(decisions) < count:
        sys.exit(f"only {len(decisions)} sample decisions; ask for --decisions {len(decisions)} or fewer")
    return decisions


def old_call(decision: CourtDecision, env: dict[str, str]) -> None:
    """The invocation before issue 11: bare, prompt and decision on stdin, in the project folder."""
    prompt = SYSTEM_PROMPT + "\n\n" + user_prompt(decision)
    done = subprocess.run(
        [str(CLAUDE), "-p", "--output-format", "json"],
        input=prompt, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300,
    )
    if done.returncode != 0:
        sys.exit(f"the old invocation failed (exit {done.returncode}): {done.stderr or done.stdout}")


def measure(requests, decisions) -> list[dict]:
    rows = []
    for request, decision in zip(requests, decisions, strict=True):
        decision_bytes = json_size(decision.text)
        rows.append({
            "bytes": request.size,
            "overhead": request.size - json_size(SYSTEM_PROMPT) - decision_bytes,
            "decision_share": decision_bytes / request.size,
            "tools": len(request.body.get("tools") or []),
            "model": request.body.get("model"),
        })
    return rows


def summary(name: str, rows: list[dict]) -> dict:
    figures = {
        "bytes": statistics.mean(r["bytes"] for r in rows),
        "overhead": statistics.mean(r["overhead"] for r in rows),
        "overhead_max": max(r["overhead"] for r in rows),
        "decision_share": statistics.mean(r["decision_share"] for r in rows),
        "tools": max(r["tools"] for r in rows),
        "models": sorted({r["model"] for r in rows}),
    }
    print(
        f"{name:4}  request {figures['bytes']:>9,.0f} B   overhead {figures['overhead']:>8,.0f} B "
        f"(max {figures['overhead_max']:,})   decision {figures['decision_share']:6.1%} of the "
        f"request   tools {figures['tools']:>2}   model {', '.join(figures['models'])}"
    )
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=20, help="sample decisions (default 20)")
    args = parser.parse_args()
    if not CLAUDE.exists():
        sys.exit(f"the real Claude CLI is not installed at {CLAUDE}: run `make claude-cli`")
    decisions = sample_decisions(args.decisions)

    with tempfile.TemporaryDirectory(prefix="cli-overhead-") as scratch, AnthropicStub() as stub:
        home = Path(scratch) / "home"
        (home / ".claude").mkdir(parents=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE_"))}
        env.update(isolated_env(stub.url, home), CLAUDE_CONFIG_DIR=str(home / ".claude"))
        env["TMPDIR"] = str(Path(scratch) / "tmp")  # the old call's leftovers go with the scratch
        Path(env["TMPDIR"]).mkdir()
        for _ in range(2 * len(decisions)):
            stub.reply('{"halachot": []}')

        for decision in decisions:
            old_call(decision, env)
        old_requests = stub.messages()

        os.environ.clear()
        os.environ.update(env)
        settings.CLAUDE_CLI = str(CLAUDE)
        settings.CLAUDE_CONFIG_DIR = str(home / ".claude")
        settings.HALACHA_CLI_EXTRA_ARGS = ""
        for decision in decisions:
            ask_halachot(ClaudeCliExtractor(), decision)
        new_requests = stub.messages()[len(old_requests):]
        others = [r for r in stub.requests if r not in old_requests and r not in new_requests]

    print(f"claude CLI {PINNED}, {len(decisions)} sample decisions, one call each way; "
          f"extraction prompt {json_size(SYSTEM_PROMPT):,} B")
    old = summary("old", measure(old_requests, decisions))
    new = summary("new", measure(new_requests, decisions))
    print(f"ratio old/new: request bytes {old['bytes'] / new['bytes']:.1f}x, "
          f"overhead {old['overhead'] / new['overhead']:.1f}x; "
          f"decision share {old['decision_share']:.1%} -> {new['decision_share']:.1%}")
    print(f"other requests (any host but the Messages API): {len(others)}")
    ok = new["overhead_max"] <= TARGET_OVERHEAD
    print(f"target: new overhead <= {TARGET_OVERHEAD:,} B per call: "
          f"{'met' if ok else 'MISSED'} (max {new['overhead_max']:,} B)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
