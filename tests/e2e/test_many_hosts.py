"""Three hosts with the same schedule fire every scheduled job at the same instant, 20 slots in
a row, against one PostgreSQL. Each host is a UTS namespace of its own (tests/support/hosts.py)
with its own var/; the slot each start serves is passed in as run_scheduler passes it.

What must hold: every drain ran at most one run at a time (from the run rows' intervals);
exactly one digest per slot (from the jobs' output: without EMAIL_HOST the digest goes there), one fetch per slot and
one supervisor tick acting per slot; and nothing failed.
"""

from __future__ import annotations

import shutil
from datetime import datetime
from itertools import pairwise
from zoneinfo import ZoneInfo

import psycopg
import pytest
from croniter import croniter
from django.conf import settings

from drains.trigger import scheduled_for_args
from tests.support.db import ROOT, database_url
from tests.support.gate_db import fresh_database
from tests.support.hosts import Host

pytestmark = pytest.mark.slow
SLOTS = 20
HOSTS = ("host-a", "host-b", "host-c")
START = datetime(2026, 12, 1, 0, 0, tzinfo=ZoneInfo("Asia/Jerusalem"))


def fire_times(expression: str, count: int) -> list[datetime]:
    it = croniter(expression, START)
    return [it.get_next(datetime) for _ in range(count)]


def test_three_hosts_fire_every_job_together_for_20_slots(tmp_path, django_db_blocker):
    jobs = [(entry[2][0], entry[0]) for entry in settings.CRONJOBS]
    slots = {command: fire_times(expression, SLOTS) for command, expression in jobs}
    with django_db_blocker.unblock(), fresh_database("hosts") as dbname:
        url = database_url(dbname)
        hosts = [
            # the production settings: without EMAIL_HOST a digest goes to the job's output
            Host(name, tmp_path, url, DIGEST_RECIPIENTS="ops@example.com")
            for name in HOSTS
        ]
        ready = hosts[0].run("migrate")
        assert ready.returncode == 0, ready.stderr
        inbox = hosts[0].var / "inbox"
        inbox.mkdir()
        shutil.copy(ROOT / "halacha" / "samples" / "decisions-en.jsonl", inbox)

        failures, digests = [], []
        for n in range(SLOTS):
            started = [
                (host.name, command, host.popen(command, "--trigger", "cron", "--skip-checks",
                                                *scheduled_for_args(slots[command][n])))
                for command, _ in jobs
                for host in hosts
            ]
            for host, command, process in started:
                output = process.communicate(timeout=300)[0]
                if command == "send_digest":
                    digests.append(output.count("Subject: [drains] digest"))
                if process.returncode != 0:
                    failures.append((n, host, command, process.returncode, output[-2000:]))
        assert not failures, failures[:3]

        with psycopg.connect(url) as conn:
            runs = conn.execute(
                "SELECT drain, host, status, trigger, slot, started_at, finished_at FROM drains_drainrun"
            ).fetchall()

    assert not [r for r in runs if r[2] not in ("succeeded",)], [r for r in runs if r[2] != "succeeded"]
    by_job: dict[str, list] = {}
    for run in runs:
        by_job.setdefault(run[0], []).append(run)

    # one digest, one fetch and one acting supervisor tick per slot, across the three hosts
    for job in ("send_digest", "fetch_decisions", "supervise_drains"):
        served = sorted(run[4] for run in by_job[job])
        assert served == sorted(slots[job]), (job, len(served))
    assert sum(digests) == SLOTS and max(digests) == 1, digests  # one mail per slot, one host
    assert len({run[1] for job in by_job.values() for run in job}) > 1  # work really was shared

    # every drain ran at most one run at a time
    for drain in ("halacha", "metadata"):
        intervals = sorted((run[5], run[6]) for run in by_job[drain])
        assert intervals, drain
        assert all(nxt[0] >= cur[1] for cur, nxt in pairwise(intervals)), (drain, intervals)
