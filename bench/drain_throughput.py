"""What the drain runtime costs around the extractor call.

(a) Throughput with an instant extractor on 1,000 and 10,000 pending decisions: decisions per
    second and queries per decision (Django's connection, counted with an execute wrapper; the
    lock connection's one check per chunk is extra). Queries per decision must not grow with the
    backlog. Baseline, in the same run on the same rows: a minimal psycopg loop doing the same
    statements (select a chunk, stage, delete staged + update decision + insert halacha in one
    transaction, a checkpoint per chunk) with the same extractor call. Target: runtime ≥ 0.5× it.
    Passes alternate (runtime, raw, runtime, ...) and the best of each counts, so that other
    load on the machine hits both alike.
(a') The same at the smaller backlog with a subscriber's quota signal on every answer (the
    5-hour and weekly windows, as the CLI's stream-json reports them): what recording it costs
    (drains/quota/store.py; a chunk's signals in one statement at its checkpoint). Target: at
    most 1 query per decision more than (a).
(b) Resident memory of this process before and after a 10,000-decision run with DEBUG on
    (Django's query log must not accumulate). Target: growth < 20 MB.
(c) A 200 ms extractor with ``concurrency=8`` on 100 decisions: wall time against the ideal
    100 × 0.2 / 8 = 2.5 s. Target ≤ 1.3×.
(d) The journal of paid results' cost (drains/journal.py: one fsync'd SQLite commit per paid
    call): (a)'s runtime at the smaller backlog, passes alternating with the journal and
    without it (``DRAINS_JOURNAL_UNSAFE_OFF``, switched in this process), ``--journal-passes``
    of each; the median and the best of each. Target: with ≥ 0.9× without.

Uses DATABASE_URL's server when set, else the embedded PostgreSQL; creates and drops its own
database (bench_drain_<pid>).

    .venv/bin/python bench/drain_throughput.py [--small 1000] [--large 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import sys
import time
from pathlib import Path

import psutil
import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._harness import admin_execute, server_url  # noqa: E402

CHUNK = 10


def setup_django(database: str) -> None:
    os.environ["DATABASE_URL"] = server_url(database)
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    os.environ["HALACHA_EXTRACTOR"] = "tests.support.extractors:InstantExtractor"
    os.environ.pop("TEST_EXTRACTOR_CALL_LOG", None)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    logging.getLogger("drains").setLevel(logging.WARNING)


def load_backlog(n: int, *, padding: int = 20) -> None:
    """``n`` pending decisions, written by the server (no Python objects left behind), each
    with ``padding`` sentences of background after its rule. Empties the drain tables first."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE halacha_halacha, halacha_courtdecision, drains_stagedresult, "
            "drains_drainevent, drains_drainrun, drains_draincontrol, drains_item CASCADE"
        )
        cursor.execute(
            """
            INSERT INTO halacha_courtdecision (external_id, court, case_number, title, text,
                text_sha256, language, url, judges, parties, created_at, updated_at)
            SELECT 'b-' || i, '', '', '', 'Decision ' || i || ' lays down a rule for the bench. '
                || 'We hold that rule ' || i || ' binds every party to a contract made in '
                || 'writing. ' || repeat('Background facts. ', %s),
                '', 'en', '', '[]', '[]', now(), now()
            FROM generate_series(1, %s) AS i
            """,
            [padding, n],
        )
        # Each drain's items, pending, as the import's saves would have queued them.
        cursor.execute(
            "INSERT INTO drains_item (drain, ref, status, attempts, last_error, version, "
            "arrived_at, updated_at) SELECT drain, id, 'pending', 0, '', '', now(), now() "
            "FROM halacha_courtdecision CROSS JOIN (VALUES ('halacha'), ('metadata')) AS d(drain)"
        )
        cursor.execute("ANALYZE halacha_courtdecision")
        cursor.execute("ANALYZE drains_item")


def runtime_pass(n: int) -> dict:
    from django.db import connection

    from drains.runner import run_drain

    load_backlog(n)
    count = [0]

    def counter(execute, sql_text, params, many, context):
        count[0] += 1
        return execute(sql_text, params, many, context)

    started = time.perf_counter()
    with connection.execute_wrapper(counter):
        result = run_drain("halacha", trigger="manual", max_items=n, chunk_size=CHUNK, tty=False)
    elapsed = time.perf_counter() - started
    assert result.done == n, result
    return {"per_s": n / elapsed, "queries": count[0] / n, "elapsed": elapsed}


def raw_pass(n: int, database: str) -> dict:
    """The same statements with bare psycopg: the floor any runtime sits on."""
    from halacha.extractors.protocol import ask_halachot
    from tests.support.extractors import InstantExtractor

    load_backlog(n)
    extractor = InstantExtractor()

    class Row:  # what the halacha drain's ask reads from a decision
        def __init__(self, pk, external_id, text):
            self.pk, self.external_id, self.text = pk, external_id, text
            self.language, self.court, self.case_number, self.title = "en", "", "", ""
            self.decided_on = None

    started = time.perf_counter()
    with psycopg.connect(server_url(database), autocommit=True) as conn:
        run_id = conn.execute(
            "INSERT INTO drains_drainrun (drain, trigger, mode, host, pid, started_at, status, "
            "items_done, items_failed, chunks, error, stop_reason, input_tokens, output_tokens, "
            "cache_creation_input_tokens, cache_read_input_tokens, cost_usd, model_usage, "
            "concurrency, busy_seconds, error_kind, error_traceback, extractor) VALUES "
            "('halacha', 'manual', 'normal', 'bench', 0, now(), 'running', 0, 0, 0, '', '', "
            "0, 0, 0, 0, 0, '{}', 1, 0, '', '', '') RETURNING id"
        ).fetchone()[0]
        last, done = 0, 0
        while True:
            rows = conn.execute(
                "SELECT d.id, d.external_id, d.text FROM drains_item i "
                "JOIN halacha_courtdecision d ON d.id = i.ref WHERE i.drain = 'halacha' "
                "AND i.status = 'pending' AND i.ref > %s ORDER BY i.ref LIMIT %s",
                (last, CHUNK),
            ).fetchall()
            if not rows:
                break
            for pk, external_id, text in rows:
                result = ask_halachot(extractor, Row(pk, external_id, text))
                payload = {
                    "extractor": result.extractor,
                    "model": result.model,
                    "halachot": [h.__dict__ for h in result.halachot],
                    "raw": result.raw,
                }
                conn.execute(
                    "INSERT INTO drains_stagedresult (drain, item_key, run_id, payload, "
                    "created_at, promote_attempts, promote_error) VALUES "
                    "('halacha', %s, %s, %s::jsonb, now(), 0, '') "
                    "ON CONFLICT (drain, item_key) DO NOTHING RETURNING id",
                    (str(pk), run_id, json.dumps(payload)),
                ).fetchone()
                with conn.transaction():
                    conn.execute(
                        "WITH gone AS (DELETE FROM drains_stagedresult WHERE drain = 'halacha' "
                        "AND item_key = %s RETURNING 1) UPDATE drains_item SET status = 'done', "
                        "done_at = now(), last_error = '', updated_at = now() "
                        "WHERE drain = 'halacha' AND ref = %s AND status <> 'done' "
                        "AND EXISTS (SELECT 1 FROM gone)",
                        (str(pk), pk),
                    )
                    for ordinal, h in enumerate(payload["halachot"], 1):
                        conn.execute(
                            "INSERT INTO halacha_halacha (decision_id, ordinal, rule, quote, "
                            "topics, quote_spans, grounding, extractor, model, created_at) "
                            "VALUES (%s, %s, %s, %s, %s::jsonb, %s::jsonb, %s, %s, %s, now())",
                            (pk, ordinal, h["rule"], h["quote"], json.dumps(h["topics"]),
                             json.dumps(h["quote_spans"]), h["grounding"],
                             payload["extractor"], payload["model"]),
                        )  # fmt: skip
                done += 1
            last = rows[-1][0]
            conn.execute(
                "UPDATE drains_drainrun SET items_done = items_done + %s, chunks = chunks + 1, "
                "last_checkpoint_at = now() WHERE id = %s",
                (len(rows), run_id),
            )
    elapsed = time.perf_counter() - started
    assert done == n
    return {"per_s": n / elapsed, "elapsed": elapsed}


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def memory_pass(n: int) -> dict:
    from django.conf import settings
    from django.db import connection

    from drains.runner import run_drain

    settings.DEBUG = True
    try:
        runtime_pass(1000)  # warm: imports, caches, allocator pools
        load_backlog(n)
        gc.collect()
        before = rss_mb()
        result = run_drain("halacha", trigger="manual", max_items=n, chunk_size=CHUNK, tty=False)
        gc.collect()
        after = rss_mb()
        assert result.done == n
        return {"before": before, "after": after, "queries_logged": len(connection.queries)}
    finally:
        settings.DEBUG = False


def concurrency_pass(n: int, concurrency: int, pause: float) -> dict:
    from django.conf import settings

    from drains.runner import run_drain

    load_backlog(n)
    os.environ["TEST_EXTRACTOR_SLEEP"] = str(pause)
    settings.HALACHA_EXTRACTOR = "tests.support.extractors:SleepingExtractor"
    try:
        started = time.perf_counter()
        result = run_drain("halacha", trigger="manual", max_items=n, concurrency=concurrency)
        wall = time.perf_counter() - started
    finally:
        settings.HALACHA_EXTRACTOR = "tests.support.extractors:InstantExtractor"
    assert result.done == n
    ideal = n * pause / concurrency
    return {"wall": wall, "ideal": ideal, "ratio": wall / ideal}


def journal_cost(n: int, passes: int) -> None:
    from statistics import median

    from django.conf import settings

    rates: dict[bool, list[float]] = {True: [], False: []}
    saved = settings.DRAINS_JOURNAL_UNSAFE_OFF
    try:
        for _ in range(passes):
            for journal in (True, False):
                settings.DRAINS_JOURNAL_UNSAFE_OFF = not journal
                rates[journal].append(runtime_pass(n)["per_s"])
    finally:
        settings.DRAINS_JOURNAL_UNSAFE_OFF = saved
    on, off = rates[True], rates[False]
    print(
        f"(d) the journal, {n} decisions, {passes} passes each, alternating: with "
        f"{median(on):.0f}/s median (best {max(on):.0f}), without {median(off):.0f}/s "
        f"(best {max(off):.0f}): {median(on) / median(off):.2f}x median, "
        f"{max(on) / max(off):.2f}x best"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=1000, help="the smaller backlog")
    parser.add_argument("--large", type=int, default=10000, help="the larger backlog")
    parser.add_argument("--concurrency", type=int, default=8, help="threads for part (c)")
    parser.add_argument("--repeat", type=int, default=3, help="passes of (a); the best counts")
    parser.add_argument("--journal-passes", type=int, default=3,
                        help="passes of (d) with and without the journal, alternating (0: skip)")
    args = parser.parse_args()

    database = f"bench_drain_{os.getpid()}"
    admin_execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    try:
        setup_django(database)
        print(f"(a) instant extractor, chunk {CHUNK}; best of {args.repeat}, interleaved")
        print(
            f"{'backlog':>8} {'runtime/s':>10} {'raw/s':>8} {'ratio':>6} {'queries/decision':>17}"
        )
        for n in (args.small, args.large):
            runtimes, raws = [], []
            for _ in range(args.repeat):
                runtimes.append(runtime_pass(n))
                raws.append(raw_pass(n, database))
            best = max(runtimes, key=lambda r: r["per_s"])
            raw_best = max(r["per_s"] for r in raws)
            print(
                f"{n:>8} {best['per_s']:>10.0f} {raw_best:>8.0f} "
                f"{best['per_s'] / raw_best:>6.2f} {best['queries']:>17.2f}"
            )
        os.environ["TEST_EXTRACTOR_QUOTA_SIGNAL"] = "1"
        try:
            signalled = max((runtime_pass(args.small) for _ in range(args.repeat)),
                            key=lambda r: r["per_s"])
        finally:
            os.environ.pop("TEST_EXTRACTOR_QUOTA_SIGNAL")
        print(
            f"(a') with a quota signal on every answer, {args.small}: {signalled['per_s']:.0f}/s, "
            f"{signalled['queries']:.2f} queries/decision"
        )
        memory = memory_pass(args.large)
        print(
            f"(b) RSS with DEBUG on: {memory['before']:.1f} MB before, {memory['after']:.1f} MB "
            f"after {args.large} decisions: growth {memory['after'] - memory['before']:+.1f} MB; "
            f"{memory['queries_logged']} queries left in the DEBUG log"
        )
        conc = min(
            (concurrency_pass(100, args.concurrency, 0.2) for _ in range(args.repeat)),
            key=lambda r: r["wall"],
        )
        print(
            f"(c) 100 decisions x 0.2 s, concurrency {args.concurrency}, best of {args.repeat}: "
            f"wall {conc['wall']:.2f} s "
            f"vs ideal {conc['ideal']:.2f} s = {conc['ratio']:.2f}x"
        )
        if args.journal_passes:
            journal_cost(args.small, args.journal_passes)
    finally:
        from django.db import connections

        connections.close_all()
        admin_execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
        )


if __name__ == "__main__":
    main()
