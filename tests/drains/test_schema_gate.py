"""The schema gate: one migrator at a time, bounded waits, crash release, DDL under lock_timeout.

The process tests run real ``manage.py`` children against throw-away databases on the test
server. Those that need a migrator stopped mid-migration install the test-only gate_app, whose
migration 0002 waits for a *latch* (an advisory lock the test holds).
"""

from __future__ import annotations

import signal
import socket
import time
from contextlib import contextmanager
from io import StringIO

import pytest
from django.core.management import call_command, get_commands, load_command_class
from django.db import connection

from drains import pglock, schema
from tests.support.db import admin_connect, manage, popen_manage
from tests.support.gate_app import LATCH_KEY, LATCH_NAMESPACE
from tests.support.gate_db import (
    Child,
    fresh_database,
    gate_env,
    schema_problems,
    session_pid,
    wait_until,
)

RACERS = 16
ROUNDS = 5
COLLISION_SIGNS = ("already exists", "duplicate key", "deadlock detected", "does not exist")


# --- the race ---------------------------------------------------------------------------------


def run_racers(dbname: str, *, unsafe: bool = False) -> list[tuple[tuple, int, str, str]]:
    """Start RACERS gates at once on ``dbname``: half `migrate`, half `ensure_schema`."""
    env = gate_env(dbname, DRAINS_SCHEMA_GATE_UNSAFE_NO_LOCK=unsafe)
    started = []
    for i in range(RACERS):
        args = ("migrate", "--noinput", "-v0") if unsafe or i % 2 else ("ensure_schema",)
        args = (*args, "--skip-checks")  # the checks are not what races
        started.append((args, popen_manage(*args, env=env)))
    results = []
    for args, proc in started:
        out, err = proc.communicate(timeout=300)
        results.append((args, proc.returncode, out, err))
    return results


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


@pytest.mark.slow
def test_race__16_gates_at_once_on_fresh_databases__5_rounds__all_exit_0_with_complete_schema(
    transactional_db,
):
    for round_no in range(1, ROUNDS + 1):
        with fresh_database("gate_race") as dbname:
            results = run_racers(dbname)
            failed = [(args, code, last_line(err)) for args, code, _, err in results if code]
            assert not failed, f"round {round_no}: {len(failed)} of {RACERS} failed: {failed[:3]}"
            assert schema_problems(dbname) == [], f"round {round_no}"
            # Only a gate that found work says so; whoever came after the first found none.
            migrated = [out for args, _, out, _ in results if out.strip() == "migrated"]
            assert len(migrated) <= 1, f"round {round_no}: {len(migrated)} gates migrated"


@pytest.mark.slow
def test_race_without_the_lock__the_same_race_fails__so_the_race_test_can_see_the_bug(
    transactional_db,
):
    outcomes = []
    for round_no in range(1, ROUNDS + 1):
        with fresh_database("gate_nolock") as dbname:
            results = run_racers(dbname, unsafe=True)
            failed = [last_line(err) for _, code, _, err in results if code]
            outcomes.append((round_no, failed))
            if failed:
                break
    round_no, failed = outcomes[-1]
    assert failed, f"{ROUNDS} unlocked rounds of {RACERS} migrators all succeeded: {outcomes}"
    # The failures are the collision the lock prevents, not some unrelated start-up error.
    assert any(sign in line for line in failed for sign in COLLISION_SIGNS), failed


# --- a migrator held inside a migration -------------------------------------------------------


@contextmanager
def latch_held(dbname: str):
    """Hold gate_app's latch: a migrator that reaches gate_app.0002 waits until it is released."""
    conn = admin_connect(dbname)
    try:
        conn.execute("SELECT pg_advisory_lock(%s, %s)", [LATCH_NAMESPACE, LATCH_KEY])
        yield conn
    finally:
        conn.close()


def release_latch(conn) -> None:
    assert conn.execute(
        "SELECT pg_advisory_unlock(%s, %s)", [LATCH_NAMESPACE, LATCH_KEY]
    ).fetchone()[0]


def wait_blocked_at_latch(dbname: str, child: Child) -> int:
    """Wait until ``child`` is inside gate_app.0002 (so it holds the schema lock)."""

    def inside() -> int | None:
        if child.proc.poll() is not None:
            raise AssertionError(
                f"migrator exited early ({child.proc.returncode}): {child.output()}"
            )
        return session_pid(dbname, f"drains-migrate ddl %pid={child.pid}", waiting_on_latch=True)

    return wait_until(inside, timeout=120, what="the migrator to reach gate_app.0002")


def lock_session_of(dbname: str, child: Child) -> int | None:
    return session_pid(dbname, f"drains-migrate lock %pid={child.pid}")


def holder_name(dbname: str) -> str | None:
    with admin_connect(dbname) as conn:
        status = schema.schema_lock_status(conn.cursor())
    return status.holder.application_name if status.holder else None


def recorded(dbname: str, app: str) -> set[str]:
    with admin_connect(dbname) as conn:
        rows = conn.execute("SELECT name FROM django_migrations WHERE app = %s", [app]).fetchall()
    return {name for (name,) in rows}


def has_colour_column(dbname: str) -> bool:
    with admin_connect(dbname) as conn:
        return bool(
            conn.execute(
                "SELECT 1 FROM information_schema.columns"
                " WHERE table_name = 'gate_app_widget' AND column_name = 'colour'"
            ).fetchone()
        )


# A migrator that is held at the latch must not give up on its own meanwhile.
PATIENT = {"DRAINS_MIGRATE_LOCK_TIMEOUT_MS": 600000}


def test_sigkill_of_the_holder__the_next_migrator_proceeds_at_once(transactional_db):
    with fresh_database() as dbname, latch_held(dbname) as latch:
        holder = Child("migrate", "--noinput", env=gate_env(dbname, gate_app=True, **PATIENT))
        waiter = None
        try:
            wait_blocked_at_latch(dbname, holder)
            waiter = Child(
                "ensure_schema",
                env=gate_env(dbname, gate_app=True, DRAINS_MIGRATE_LOCK_WAIT_SECONDS=120),
            )
            wait_until(
                lambda: lock_session_of(dbname, waiter), timeout=60, what="the waiter to poll"
            )
            assert holder_name(dbname).endswith(f"pid={holder.pid}")

            holder.proc.send_signal(signal.SIGKILL)
            holder.wait()
            killed_at = time.monotonic()
            wait_until(
                lambda: (holder_name(dbname) or "").endswith(f"pid={waiter.pid}"),
                timeout=30,
                what="the waiter to take the lock",
            )
            took = time.monotonic() - killed_at
            release_latch(latch)
            code = waiter.wait(timeout=120)
            # The killed holder's half-done migration rolled back; the waiter finished the job.
            problems = schema_problems(dbname, gate_app=True)
        finally:
            holder.kill()
            if waiter is not None:
                waiter.kill()
    # The lock died with the killed process's session: no wait for a bound, no manual cleanup.
    assert took < 3.0, f"the waiter took the lock {took:.1f}s after the holder died"
    assert code == 0, waiter.output()
    assert "".join(waiter.stdout).strip() == "migrated"
    assert problems == []
    assert holder.proc.returncode == -signal.SIGKILL


def test_a_holder_that_never_finishes__waiter_exits_nonzero_after_the_bound_naming_it(
    transactional_db,
):
    bound = 5.0
    with fresh_database() as dbname, latch_held(dbname):
        holder = Child("migrate", "--noinput", env=gate_env(dbname, gate_app=True, **PATIENT))
        waiter = None
        try:
            wait_blocked_at_latch(dbname, holder)
            holder_lock_pid = lock_session_of(dbname, holder)
            started = time.monotonic()
            waiter = Child(
                "ensure_schema",
                env=gate_env(
                    dbname,
                    gate_app=True,
                    DRAINS_MIGRATE_LOCK_WAIT_SECONDS=bound,
                    DRAINS_MIGRATE_LOCK_REPORT_SECONDS=1,
                ),
            )
            wait_until(
                lambda: lock_session_of(dbname, waiter), timeout=60, what="the waiter to poll"
            )
            status = manage("migrate_lock_status", env=gate_env(dbname))
            code = waiter.wait(timeout=120)
            elapsed = time.monotonic() - started
            assert holder.proc.poll() is None, "the holder was supposed to be stuck"
        finally:
            holder.kill()
            if waiter is not None:
                waiter.kill()

    err = "".join(waiter.stderr)
    assert code == 1
    assert bound <= elapsed < bound + 30
    assert "Gave up after waiting" in err and "DRAINS_MIGRATE_LOCK_WAIT_SECONDS=5" in err
    final = last_line(err)
    # The holder: backend pid, application_name (host and OS pid), state, how long, and the
    # migration it is stuck in (its DDL session's query).
    assert f"pid {holder_lock_pid}," in final
    assert f"'drains-migrate lock host={socket.gethostname()[:10]}" in final
    assert f"pid={holder.pid}'" in final
    assert "state idle" in final and "holding it for" in final
    assert "pg_advisory_xact_lock" in final
    assert "Traceback" not in err
    # ... and it said so along the way, about every DRAINS_MIGRATE_LOCK_REPORT_SECONDS.
    reports = [
        line for line in waiter.stderr if "Waiting " in line and "for the schema lock" in line
    ]
    assert len(reports) >= 2, err
    assert all(f"pid={holder.pid}'" in line for line in reports)

    # migrate_lock_status, run while the waiter waited: holder, its migration, the waiter.
    assert status.returncode == 0, status.stderr
    out = status.stdout
    assert f"Holder: pid {holder_lock_pid}, application_name 'drains-migrate lock" in out
    assert "holding it for" in out
    assert "migrating in: pid" in out and "pg_advisory_xact_lock" in out
    assert "Waiters (1):" in out
    assert f"pid={waiter.pid}'" in out and "(polling pg_try_advisory_lock)" in out


def test_a_migrator_whose_lock_session_ended__stops_before_its_next_migration(transactional_db):
    with fresh_database() as dbname, latch_held(dbname) as latch:
        migrator = Child("migrate", "--noinput", env=gate_env(dbname, gate_app=True, **PATIENT))
        try:
            wait_blocked_at_latch(dbname, migrator)
            lock_pid = lock_session_of(dbname, migrator)
            with admin_connect(dbname) as admin:
                assert admin.execute("SELECT pg_terminate_backend(%s)", [lock_pid]).fetchone()[0]
            release_latch(latch)
            code = migrator.wait(timeout=120)
        finally:
            migrator.kill()
        applied = recorded(dbname, "gate_app")
        colour = has_colour_column(dbname)
    assert code == 1
    assert "no longer holds the schema lock" in "".join(migrator.stderr)
    # The migration that was running finished; the next one never started.
    assert "0002_wait_for_latch" in applied
    assert "0003_widget_colour" not in applied and not colour


# --- DDL under lock_timeout ----------------------------------------------------------------------


def test_ddl_behind_a_long_transaction__fails_clearly__then_retried_until_the_blocker_ends(
    transactional_db,
):
    with fresh_database() as dbname:
        first = manage("migrate", "gate_app", "0002", env=gate_env(dbname, gate_app=True))
        assert first.returncode == 0, first.stderr
        with admin_connect(dbname) as blocker:
            blocker.execute("SET application_name = 'gate-test-blocker'")
            blocker.execute("BEGIN")
            blocker.execute("LOCK TABLE gate_app_widget IN ACCESS SHARE MODE")
            blocker_pid = blocker.info.backend_pid

            # 1. The blocker never ends: bounded retries, then a message that names it.
            started = time.monotonic()
            gave_up = manage(
                "migrate",
                "gate_app",
                env=gate_env(
                    dbname,
                    gate_app=True,
                    DRAINS_MIGRATE_LOCK_TIMEOUT_MS=100,
                    DRAINS_MIGRATE_DDL_RETRIES=2,
                    DRAINS_MIGRATE_DDL_BACKOFF_SECONDS=0.05,
                ),
            )
            gave_up_after = time.monotonic() - started
            assert "0003_widget_colour" not in recorded(dbname, "gate_app")
            assert not has_colour_column(dbname)

            # 2. The blocker ends while the migrator retries: it succeeds.
            patient = Child(
                "migrate",
                "gate_app",
                env=gate_env(
                    dbname,
                    gate_app=True,
                    DRAINS_MIGRATE_LOCK_TIMEOUT_MS=100,
                    DRAINS_MIGRATE_DDL_RETRIES=200,
                    DRAINS_MIGRATE_DDL_BACKOFF_SECONDS=0.05,
                ),
            )
            try:
                wait_until(
                    lambda: any("retry 2/200" in line for line in patient.stderr),
                    timeout=60,
                    what="the migrator to retry twice",
                )
                blocker.execute("COMMIT")
                code = patient.wait(timeout=60)
            finally:
                patient.kill()
        applied = recorded(dbname, "gate_app")
        colour = has_colour_column(dbname)

    assert gave_up.returncode == 1
    err = gave_up.stderr
    assert "gate_app.0003_widget_colour was not applied" in err
    assert "lock_timeout (100 ms)" in err and "3 times" in err
    assert f"pid {blocker_pid}," in err and "'gate-test-blocker'" in err
    assert "state idle in transaction" in err and "pg_terminate_backend" in err
    assert "Traceback" not in err
    assert gave_up_after < 30

    assert code == 0, patient.output()
    out = "".join(patient.stdout)
    assert "Applying gate_app.0003_widget_colour... LOCK TIMEOUT" in out
    assert "Applying gate_app.0003_widget_colour... OK" in out
    assert "0003_widget_colour" in applied and colour


# --- in-process: the cheap check, the lock object, the status -------------------------------------


def test_up_to_date_database__the_gate_costs_one_query_and_never_waits_for_the_lock(
    transactional_db, django_assert_num_queries, settings
):
    # Another migrator holds the lock, and this gate may not wait at all: it must not need it.
    settings.DRAINS_MIGRATE_LOCK_WAIT_SECONDS = 0
    other = schema.acquire_schema_lock()
    try:
        connection.ensure_connection()
        with django_assert_num_queries(1) as captured:
            assert schema.ensure_schema() is False
    finally:
        other.release()
    assert "django_migrations" in captured.captured_queries[0]["sql"]
    assert schema.missing_migrations() == set()
    assert schema.unapplied_migrations() == []


def test_cheap_check_sees_a_migration_without_its_row(db):
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM django_migrations WHERE app = 'drains' AND name = '0001_initial'"
        )
    assert schema.missing_migrations() == {("drains", "0001_initial")}


def test_schema_lock__reentrant__shown_in_status__a_second_taker_times_out_naming_it(db, settings):
    settings.DRAINS_MIGRATE_LOCK_WAIT_SECONDS = 0.3
    with schema.schema_lock() as lock:
        with schema.schema_lock() as inner:
            assert inner is lock
        with connection.cursor() as cursor:
            status = schema.schema_lock_status(cursor)
        assert status.holder.pid == lock.backend_pid
        assert status.holder.application_name == lock.application_name
        assert status.held_for is not None and status.held_for >= 0
        with pytest.raises(schema.SchemaLockTimeout) as refused:
            schema.acquire_schema_lock()
        assert f"pid {lock.backend_pid}," in str(refused.value)
        assert lock.application_name in str(refused.value)
    with connection.cursor() as cursor:
        holder = schema.schema_lock_status(cursor).holder
    # Released: no longer ours (a job another test started may take it for its own start-up).
    assert holder is None or holder.pid != lock.backend_pid


def test_lost_lock_is_detected_before_the_next_migration(db):
    lock = schema.acquire_schema_lock()
    try:
        schema.before_migration(using="default", lock=lock)  # held: passes
        with admin_connect(connection.settings_dict["NAME"]) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", [lock.backend_pid])
            wait_until(
                lambda: (
                    not admin.execute(
                        "SELECT 1 FROM pg_stat_activity WHERE pid = %s", [lock.backend_pid]
                    ).fetchone()
                ),
                timeout=10,
                what="the lock session to end",
            )
        with pytest.raises(schema.SchemaLockLost, match="no longer holds the schema lock"):
            schema.before_migration(using="default", lock=lock)
    finally:
        lock.release()


def test_ddl_session_sets_lock_timeout_and_resets_it_for_the_job(db, settings):
    settings.DRAINS_MIGRATE_LOCK_TIMEOUT_MS = 1234

    def show(name: str) -> str:
        with connection.cursor() as cursor:
            cursor.execute(f"SHOW {name}")
            return cursor.fetchone()[0]

    before = (show("lock_timeout"), show("application_name"))
    with schema.ddl_session():
        assert show("lock_timeout") == "1234ms"
        assert show("application_name").startswith("drains-migrate ddl host=")
    assert (show("lock_timeout"), show("application_name")) == before


def test_migrate_lock_status__free_lock_shows_its_key(db):
    out = StringIO()
    call_command("migrate_lock_status", stdout=out)
    with connection.cursor() as cursor:
        cursor.execute("SELECT oid FROM pg_database WHERE datname = current_database()")
        oid = cursor.fetchone()[0]
    text = out.getvalue()
    assert f"pg_try_advisory_lock({schema.SCHEMA_LOCK_NAMESPACE}, " in text
    assert f"classid=1296648018 objid={oid} objsubid=2" in text
    assert "Holder: none — the lock is free." in text
    assert "Waiters: none." in text


# --- small pieces ------------------------------------------------------------------------------


def test_migrate_is_the_gate_and_every_gate_command_says_when_cron_runs_it():
    commands = get_commands()
    for name in ("migrate", "ensure_schema", "migrate_lock_status"):
        assert commands[name] == "drains"
        command = load_command_class("drains", name)
        help_text = command.create_parser("manage.py", name).format_help()
        assert "cron" in help_text.lower()
        assert all(action.help for action in command.create_parser("manage.py", name)._actions)
    assert "schema gate" in load_command_class("drains", "migrate").help


def test_lock_key_halves_and_how_pg_locks_shows_them():
    assert schema.SCHEMA_LOCK_NAMESPACE == int.from_bytes(b"MIGR", "big") == 1296648018
    assert schema.database_key(16384) == 16384
    assert schema.database_key(2**32 - 1) == -1
    assert schema.schema_lock_key(2**32 - 1) == pglock.AdvisoryKey(1296648018, 2**32 - 1, 2)
    assert pglock.AdvisoryKey.single(-1) == pglock.AdvisoryKey(2**32 - 1, 2**32 - 1, 1)
    assert pglock.AdvisoryKey.single(2**32 + 5) == pglock.AdvisoryKey(1, 5, 1)


def test_application_name_fits_postgres_limit_and_keeps_the_pid():
    name = schema.application_name(
        schema.LOCK_APPLICATION_PREFIX, pid=4194304, host="h" * 200
    )
    assert len(name.encode()) <= 63
    assert name.startswith("drains-migrate lock host=hhh") and name.endswith(" pid=4194304")


def test_only_lock_timeouts_are_retried():
    import psycopg
    from django.db import OperationalError

    wrapped = OperationalError("canceling statement due to lock timeout")
    wrapped.__cause__ = psycopg.errors.LockNotAvailable("lock timeout")
    assert schema.is_lock_timeout(wrapped)
    other = OperationalError("relation already exists")
    other.__cause__ = psycopg.errors.DuplicateTable("exists")
    assert not schema.is_lock_timeout(other)
