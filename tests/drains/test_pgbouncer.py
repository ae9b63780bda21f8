"""Every job through PgBouncer in session mode — the supported way to pool: the 16-way migrate
race and the SIGKILL storm hold exactly as they do on a direct connection."""

from __future__ import annotations

import random
import signal
import time

import pytest

from drains.models import DrainRun, StagedResult
from halacha.models import CourtDecision, Halacha
from tests.support.db import admin_connect, child_env, manage, popen_manage
from tests.support.extractors import read_call_log
from tests.support.gate_db import fresh_database, schema_problems
from tests.support.items import statuses
from tests.support.pgbouncer import pgbouncer

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
RACERS = 16


def through(bouncer, dbname: str, **extra: str) -> dict[str, str]:
    env = child_env(dbname, **extra)
    env["DATABASE_URL"] = f"{bouncer.url}/{dbname}"
    return env


def test_session_mode__16_gates_at_once_on_a_fresh_database_all_exit_0_with_a_complete_schema():
    with pgbouncer("session") as bouncer:
        for _ in range(2):
            with fresh_database("bouncer_race") as dbname:
                env = through(bouncer, dbname)
                racers = [
                    popen_manage(*(("migrate", "--noinput", "-v0") if i % 2 else ("ensure_schema",)),
                                 "--skip-checks", env=env)
                    for i in range(RACERS)
                ]
                results = [(p.communicate(timeout=300), p.returncode) for p in racers]
                failed = [(code, err.strip().splitlines()[-1:]) for (_, err), code in results if code]
                assert not failed, f"{len(failed)} of {RACERS} failed: {failed[:3]}"
                assert schema_problems(dbname) == []
                # every racer connected through it (one that found the schema current needed
                # no lock session, so at least one login each)
                assert bouncer.logins(dbname) >= RACERS


def test_session_mode__sigkill_at_random_moments__every_decision_promoted_exactly_once(tmp_path):
    from django.db import connection

    decisions = CourtDecision.objects.bulk_create(
        [CourtDecision(external_id=f"b-{i:04d}", text=f"Decision {i} holds. We hold that rule {i} binds.")
         for i in range(1, 81)]
    )
    call_log = tmp_path / "calls.log"
    rng = random.Random()
    kills = 0
    with pgbouncer("session") as bouncer:
        env = through(bouncer, connection.settings_dict["NAME"],
                      HALACHA_EXTRACTOR="tests.support.extractors:SleepingExtractor",
                      TEST_EXTRACTOR_SLEEP="0.02", TEST_EXTRACTOR_CALL_LOG=str(call_log))
        while kills < 5:
            before = len(read_call_log(call_log))
            child = popen_manage("drain_halacha", "--trigger", "manual", "--max-items", "1000", env=env)
            limit = time.monotonic() + 60
            while len(read_call_log(call_log)) <= before and child.poll() is None:
                assert time.monotonic() < limit, "no call within 60 s"
                time.sleep(0.01)
            time.sleep(rng.uniform(0, 0.15))
            if child.poll() is None:
                child.send_signal(signal.SIGKILL)
                kills += 1
            child.communicate(timeout=60)
        final = popen_manage("drain_halacha", "--trigger", "manual", "--max-items", "1000", env=env)
        out, err = final.communicate(timeout=120)
        assert final.returncode == 0, err
        assert bouncer.logins(connection.settings_dict["NAME"]) >= 2 * (kills + 1)
    calls = read_call_log(call_log)
    assert set(statuses()) == {"done"}
    assert {d.halachot.count() for d in decisions} == {1}
    assert Halacha.objects.count() == len(decisions)
    assert not StagedResult.objects.exists()
    assert len(calls) <= len(decisions) + kills, f"{len(calls)} calls for {len(decisions)}"
    runs = list(DrainRun.objects.order_by("pk").values_list("status", flat=True))
    # a killed run's lock went with its PgBouncer session (DISCARD ALL): the next run saw it dead
    assert runs[-1] == "succeeded" and runs.count("crashed") >= kills - 1, runs


@pytest.mark.parametrize("command", ["migrate", "drain_halacha", "supervise_drains"])
def test_transaction_mode__refused_before_any_lock_with_one_line_naming_the_pool_mode(command):
    with pgbouncer("transaction") as bouncer, fresh_database("bouncer_tx") as dbname:
        if command != "migrate":  # the schema is current: the job goes straight for its lock
            direct = manage("migrate", "-v0", env=child_env(dbname), timeout=300)
            assert direct.returncode == 0, direct.stderr
        done = manage(command, env=through(bouncer, dbname))
        assert done.returncode == 2, done.stdout + done.stderr
        line = done.stderr.strip()
        assert "\n" not in line and "Traceback" not in line, done.stderr
        assert line.startswith("Configuration error: the database connection does not keep a "
                               "server session of its own (PgBouncer in pool_mode = transaction")
        assert bouncer.logins(dbname) >= 1  # it really went through the transaction pooler
        with admin_connect(dbname) as conn:
            # This database's locks only: other tests run beside this one on the same server.
            locks = conn.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database = "
                "(SELECT oid FROM pg_database WHERE datname = current_database())").fetchone()[0]
            runs = conn.execute("SELECT count(*) FROM drains_drainrun").fetchone()[0] \
                if command != "migrate" else 0
        assert locks == 0 and runs == 0
