"""A job as the very first command on a fresh host: no var/, no database, DATABASE_URL unset.

Cron is often the first thing to run on a new host, so the embedded PostgreSQL must be started,
its database created and the schema migrated by whichever job comes first — including the ones
that open their own lock session before Django ever connects (the schema gate, the drain lock,
the supervisor's lock).
"""

from __future__ import annotations

import subprocess
import sys

import psycopg
import pytest

from tests.support.fresh_copy import embedded_url, fresh_copy, user_env

pytestmark = pytest.mark.slow


def run(copy, *args, timeout=180):
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=copy, env=user_env(), capture_output=True, text=True, timeout=timeout,
    )


@pytest.mark.parametrize("first", ["drain_halacha", "supervise_drains", "migrate"])
def test_a_job_as_the_first_command_on_a_fresh_host_creates_the_database_and_runs(first):
    with fresh_copy("first-command") as copy:
        done = run(copy, first)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "Traceback" not in done.stderr, done.stderr
        assert (copy / "var" / "pgdata" / "PG_VERSION").exists()

        # then the rest of the first cron hour works on what the first one made
        drain = run(copy, "drain_halacha")
        assert drain.returncode == 0, drain.stdout + drain.stderr
        assert "succeeded (backlog_empty)" in drain.stdout + drain.stderr
        supervise = run(copy, "supervise_drains")
        assert supervise.returncode == 0, supervise.stdout + supervise.stderr

        with psycopg.connect(embedded_url(copy, "drains")) as conn:
            runs = conn.execute(
                "SELECT drain, status FROM drains_drainrun ORDER BY id"
            ).fetchall()
            unapplied = conn.execute(
                "SELECT count(*) FROM django_migrations WHERE app = 'drains'"
            ).fetchone()[0]
        assert unapplied > 0
        assert ("halacha", "succeeded") in runs, runs
        assert ("supervise_drains", "succeeded") in runs, runs
        assert not [r for r in runs if r[1] not in ("succeeded",)], runs
