"""Benchmark: the decision importer (halacha.importer) against a bare bulk insert.

Creates a scratch database on the configured server (DATABASE_URL, or the embedded one), writes
N generated JSONL records, and times: a bare ``bulk_create`` of the same rows (the baseline: no
validation, no upsert, one transaction), a first import (all added), a re-import (all
unchanged) and an import where every text changed (all updated). Prints records/s and each
figure's ratio to the baseline. The scratch database is dropped at the end.

    .venv/bin/python bench/import_decisions.py [--records N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

import psycopg  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from halacha.importer import import_paths, text_digest  # noqa: E402
from halacha.models import CourtDecision  # noqa: E402

WORDS = (
    "the court held that a landlord who keeps a deposit must show the damage it covers and "
    "that silence is not acceptance unless the parties agreed otherwise in advance"
).split()


def records(n: int, version: int) -> list[dict]:
    out = []
    for i in range(n):
        body = " ".join(WORDS[(i + k) % len(WORDS)] for k in range(300))
        out.append(
            {
                "external_id": f"bench-{i:06d}",
                "court": "Supreme Court",
                "case_number": f"CA {i}/24",
                "decided_on": "2024-03-01",
                "title": f"Bench v. Mark {i}",
                "text": f"Version {version}. We hold that {body}.",
                "language": "en",
                "url": f"https://decisions.example.org/bench-{i}",
            }
        )
    return out


def write(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def admin():
    params = dict(connection.get_connection_params())
    for key in ("cursor_factory", "context", "prepare_threshold", "server_side_binding"):
        params.pop(key, None)
    params["dbname"] = "postgres"
    return psycopg.connect(autocommit=True, **params)


def timed(label: str, fn, n: int, baseline: float | None) -> float:
    started = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - started
    rate = n / seconds
    ratio = f"{rate / baseline:.2f}x baseline" if baseline else "baseline"
    print(f"{label:<34} {seconds:7.2f} s  {rate:9.0f} records/s  ({ratio})  {result}")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=3000, help="records per pass (default 3000)")
    n = parser.parse_args().records

    scratch = f"bench_import_{os.getpid()}"
    with admin() as conn:
        conn.execute(f'CREATE DATABASE "{scratch}"')
    connection.close()
    connection.settings_dict["NAME"] = scratch
    try:
        call_command("migrate", verbosity=0)
        with tempfile.TemporaryDirectory() as tmp:
            first, changed = Path(tmp) / "first.jsonl", Path(tmp) / "changed.jsonl"
            write(first, records(n, 1))
            write(changed, records(n, 2))
            print(f"{n} records of {first.stat().st_size / n / 1024:.1f} KiB each")

            def bulk():
                rows = [
                    CourtDecision(**{**r, "text_sha256": text_digest(r["text"])})
                    for r in (json.loads(line) for line in first.open(encoding="utf-8"))
                ]
                CourtDecision.objects.bulk_create(rows, batch_size=500)
                return f"{CourtDecision.objects.count()} rows"

            baseline = timed("bulk_create (baseline)", bulk, n, None)
            CourtDecision.objects.all().delete()
            timed("import, all added", lambda: import_paths([first]).summary(), n, baseline)
            timed("re-import, all unchanged", lambda: import_paths([first]).summary(), n, baseline)
            timed("import, every text changed", lambda: import_paths([changed]).summary(), n, baseline)
    finally:
        connection.close()
        with admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{scratch}"')


if __name__ == "__main__":
    main()
