from __future__ import annotations

import json
from pathlib import Path

import pytest

from halacha.models import CourtDecision


@pytest.fixture
def make_decision(db):
    """Create a CourtDecision with sensible defaults; keyword arguments override them."""
    counter = {"n": 0}

    def make(**fields) -> CourtDecision:
        counter["n"] += 1
        defaults = {
            "external_id": f"test-{counter['n']}",
            "text": "We hold that a promise made without consideration is not binding.",
            "language": "en",
        }
        defaults.update(fields)
        return CourtDecision.objects.create(**defaults)

    return make


@pytest.fixture
def write_jsonl(tmp_path):
    """Write records (dicts, or raw strings for broken lines) to a .jsonl file; return its path."""

    def write(name: str, *records) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in records]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    return write
