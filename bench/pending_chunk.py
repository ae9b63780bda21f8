"""The next chunk of pending items with 1,000,000 decisions, half of them done (issue 30).

The framework keeps item state in its own table (drains/items.py): the next chunk is an index
range scan on ``drains_item_pending`` (drain, ref) WHERE status = 'pending', then the source rows
by primary key. Before, the state was a column of the decision and the chunk one range scan on a
partial index of the decisions table, read through the ORM as model instances.

Baseline, measured in the same run on the same server: that old layout rebuilt beside it (a
copy of the decisions with a ``status`` column and the old partial index ``(id) WHERE status =
(``status = 'pending' AND id > cursor ORDER BY id LIMIT n``, whole rows, read as model
instances as the drain read them then), through the same Django connection. Measured: the drain's own ``select_pending``
(what a run calls: the refs, then the rows), from the start of the backlog and from a cursor in
its middle. Goal: within 2x of the baseline.

The done half is the older half (items are worked in order), as on a real backlog.

Uses DATABASE_URL's server when set, else the embedded PostgreSQL; creates and drops its own
database (bench_chunk_<pid>).

    .venv/bin/python bench/pending_chunk.py [--decisions 1000000] [--chunk 10] [--repeat 300]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._harness import admin_execute, server_url  # noqa: E402

TEXT = "'Decision ' || i || '. We hold that rule ' || i || ' binds. ' || repeat('Facts. ', 20)"


def setup_django(database: str) -> None:
    os.environ["DATABASE_URL"] = server_url(database)
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def load(n: int) -> None:
    """``n`` decisions, the first half done for the halacha drain; the old layout beside them."""
    from django.db import connection

    half = n // 2
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO halacha_courtdecision (external_id, court, case_number, title, text, "
            "text_sha256, language, url, judges, parties, created_at, updated_at) "
            f"SELECT 'c-' || i, '', '', '', {TEXT}, '', 'en', '', '[]', '[]', now(), now() "
            "FROM generate_series(1, %s) AS i", [n])
        cursor.execute(
            "INSERT INTO drains_item (drain, ref, status, attempts, last_error, version, "
            "arrived_at, done_at, updated_at) SELECT 'halacha', id, "
            "CASE WHEN id <= (SELECT min(id) FROM halacha_courtdecision) + %s - 1 "
            "THEN 'done' ELSE 'pending' END, 0, '', '', now(), NULL, now() "
            "FROM halacha_courtdecision", [half])
        # The layout before: the state a column of the decision, its own partial index.
        cursor.execute(
            "CREATE TABLE old_decision AS SELECT d.*, i.status FROM halacha_courtdecision d "
            "JOIN drains_item i ON i.drain = 'halacha' AND i.ref = d.id")
        cursor.execute("ALTER TABLE old_decision ADD PRIMARY KEY (id)")
        cursor.execute("CREATE INDEX old_pending ON old_decision (id) WHERE status = 'pending'")
        for table in ("halacha_courtdecision", "drains_item", "old_decision"):
            cursor.execute(f"VACUUM ANALYZE {table}")


def old_layout_model():
    """The decision model as it was: its fields and a ``status``, over the old layout's table."""
    from django.db import models

    from halacha.models import CourtDecision

    fields = {f.name: f.clone() for f in CourtDecision._meta.local_fields}
    meta = type("Meta", (), {"managed": False, "db_table": "old_decision", "app_label": "halacha"})
    return type("OldDecision", (models.Model,), {
        **fields, "status": models.CharField(max_length=16), "Meta": meta,
        "__module__": __name__})


def timed(fn, repeat: int) -> float:
    """Median microseconds of ``fn()`` over ``repeat`` calls (after a warm-up)."""
    for _ in range(20):
        fn()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1e6


def measure(chunk: int, repeat: int) -> dict[str, tuple[float, float]]:
    from halacha.drain import HalachaDrain

    drain = HalachaDrain()
    first_pending = drain.select_pending(after=None, limit=1)[0].pk
    middle = first_pending + (HalachaDrain.pending_count() // 2)

    old_model = old_layout_model()

    def old(after: int | None) -> None:  # the drain's code then: pending_queryset() and a keyset
        rows = old_model.objects.filter(status="pending")
        if after is not None:
            rows = rows.filter(pk__gt=after)
        assert len(list(rows.order_by("pk")[:chunk])) == chunk

    def new(after: int | None) -> None:
        assert len(drain.select_pending(after=after, limit=chunk)) == chunk

    results = {}
    for label, cursor in (("from the start", None), ("from the middle", middle)):
        # Alternate, so that other load on the machine hits both alike; best pass of 3 each.
        base, ours = [], []
        for _ in range(3):
            base.append(timed(lambda c=cursor: old(c), repeat))
            ours.append(timed(lambda c=cursor: new(c), repeat))
        results[label] = (min(base), min(ours))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--decisions", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=300)
    args = parser.parse_args()
    database = f"bench_chunk_{os.getpid()}"
    admin_execute(f'CREATE DATABASE "{database}"')
    try:
        setup_django(database)
        started = time.perf_counter()
        load(args.decisions)
        print(f"loaded {args.decisions:,} decisions ({args.decisions // 2:,} done) in "
              f"{time.perf_counter() - started:.0f} s")
        results = measure(args.chunk, args.repeat)
        print(f"next chunk of {args.chunk} pending, median of {args.repeat}, best of 3 passes:")
        print(f"{'':18}{'before (column)':>18}{'framework':>12}{'ratio':>8}")
        for label, (base, ours) in results.items():
            print(f"{label:18}{base:15.0f} us{ours:9.0f} us{ours / base:7.2f}x")
    finally:
        from django.db import connections

        connections.close_all()
        admin_execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


if __name__ == "__main__":
    main()
