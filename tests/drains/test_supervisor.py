"""The supervisor's six steps, one tick at a time (``manage.py supervise_drains`` in-process).

Time rules run under a frozen clock. Lock liveness is real: a run counts as live only while a
real session holds its drain lock (a ``DrainLock`` this test takes). Starting a drain spawns a
real detached ``manage.py`` with the drain's command line, whose environment (database, extractor) is this test's.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone
from freezegun import freeze_time

from drains.bursts import DEFAULT_DEADLINE, set_drain_burst
from drains.clock import format_local
from drains.locks import DrainLock, SupervisorLock, drain_lock_holders
from drains.models import DrainControl, DrainEvent, DrainRun, Item, RunStatus, StagedResult
from drains.staging import stage_result
from halacha.models import CourtDecision, Halacha
from tests import factories
from tests.factories import make_run
from tests.support.db import ROOT, child_env, database_url, manage
from tests.support.items import state

pytestmark = pytest.mark.django_db(transaction=True)


def make_decisions(n: int, start: int = 1) -> list[CourtDecision]:
    return factories.make_decisions(n, start=start, prefix="s")


def tick(*args: str) -> str:
    out = io.StringIO()
    call_command("supervise_drains", *args, stdout=out)
    assert "Another supervisor" not in out.getvalue(), out.getvalue()
    return out.getvalue()


def sup_events(drain="halacha", kind=None):
    events = DrainEvent.objects.filter(drain=drain, actor="supervisor")
    if kind:
        events = events.filter(kind=kind)
    return list(events.order_by("id").values_list("kind", "message"))


@pytest.fixture
def held_lock():
    """Take a drain's lock the way a live runner does; released at the end."""
    locks = []

    def take(name="halacha") -> DrainLock:
        lock = DrainLock(name)
        assert lock.acquire()
        locks.append(lock)
        return lock

    yield take
    for lock in locks:
        lock.release()


@pytest.fixture
def child_world(monkeypatch, settings, tmp_path):
    """Drains the supervisor starts reach this test's database with a test extractor."""
    monkeypatch.setenv("DATABASE_URL", database_url())
    monkeypatch.setenv("HALACHA_EXTRACTOR", "tests.support.extractors:InstantExtractor")
    settings.DRAINS_LOG_DIR = tmp_path / "log"
    return tmp_path / "log"


def wait_supervisor_runs_end(timeout: float = 60) -> list[DrainRun]:
    """Poll the runs the supervisor started until none is running (they are real processes)."""
    limit = time.monotonic() + timeout
    while time.monotonic() < limit:
        runs = list(DrainRun.objects.filter(trigger="supervisor").order_by("pk"))
        if runs and all(run.status != RunStatus.RUNNING for run in runs):
            return runs
        time.sleep(0.05)
    raise AssertionError("the started drain did not finish in time")


# --- step 1: burst expiry ------------------------------------------------------------------------


def test_burst_past_its_deadline_is_cleared_with_a_line_and_events():
    with freeze_time("2026-12-01T10:00:00Z") as frozen:
        set_drain_burst(name="halacha", until=timezone.now() + timedelta(hours=2), actor="op")
        frozen.tick(timedelta(hours=1))
        out = tick()
        assert DrainControl.objects.get(name="halacha").burst_until is not None
        assert "clear_burst" not in out
        frozen.tick(timedelta(hours=1))
        out = tick()
    assert DrainControl.objects.get(name="halacha").burst_until is None
    assert "halacha  clear_burst  burst deadline Tue 2026-12-01 14:00 IST has passed" in out
    # The first tick held (empty backlog), the second cleared the burst.
    assert [k for k, _ in sup_events()] == ["hold", "burst_expired", "clear_burst"]


def test_a_failure_to_clear_the_burst_is_a_visible_note_not_swallowed():
    with connection.cursor() as cursor:
        cursor.execute(
            """
            CREATE FUNCTION supervisor_test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'control rows are read-only during maintenance'; END $$;
            CREATE TRIGGER supervisor_test_refuse BEFORE UPDATE ON drains_draincontrol
            FOR EACH ROW EXECUTE FUNCTION supervisor_test_refuse();
            """
        )
    try:
        with freeze_time("2026-12-01T10:00:00Z") as frozen:
            DrainControl.objects.create(name="halacha", burst_until=timezone.now())
            frozen.tick(timedelta(minutes=1))
            out = tick()
            again = tick()
    finally:
        with connection.cursor() as cursor:
            cursor.execute(
                "DROP TRIGGER supervisor_test_refuse ON drains_draincontrol; "
                "DROP FUNCTION supervisor_test_refuse();"
            )
    assert DrainControl.objects.get(name="halacha").burst_until is not None
    notes = sup_events(kind="note")
    assert len(notes) == 1, notes  # once per episode, though both ticks print it
    assert "could not clear the expired burst" in notes[0][1]
    assert "read-only during maintenance" in notes[0][1]
    for text in (out, again):
        assert "halacha  note  burst deadline" in text


# --- step 2: crashed -----------------------------------------------------------------------------


def test_running_run_without_its_lock_is_crashed_one_with_its_lock_is_left(held_lock):
    lock = held_lock("metadata")
    dead = make_run("halacha", checkpoint=timezone.now())
    alive = make_run("metadata", checkpoint=timezone.now(), backend_pid=lock.backend_pid)
    out = tick()
    dead.refresh_from_db()
    alive.refresh_from_db()
    assert dead.status == RunStatus.CRASHED and dead.finished_at is not None
    assert alive.status == RunStatus.RUNNING
    assert f"halacha  crashed  run {dead.pk}" in out
    assert "metadata  crashed" not in out
    assert [k for k, _ in sup_events()] == ["crashed"]


def test_running_run_whose_backend_is_not_the_lock_holder_is_crashed_never_signalled(
    held_lock, reaped_process
):
    """The drain lock is held, but by another session than the run recorded: the run's process
    is gone and its pid may have been reused. Even hung-looking, it is marked crashed and its
    pid is never signalled."""
    lock = held_lock("halacha")
    bystander = reaped_process()  # stands for whatever now has the run's old pid
    with connection.cursor() as cursor:  # a live backend that is not the lock's
        cursor.execute("SELECT pg_backend_pid()")
        stale_backend = cursor.fetchone()[0]
    with freeze_time("2026-12-01T10:00:00Z") as frozen:
        run = make_run(pid=bystander.pid, backend_pid=stale_backend, checkpoint=timezone.now())
        frozen.tick(timedelta(days=1))  # far past any hung threshold
        out = tick()
    run.refresh_from_db()
    assert (run.status, run.stop_reason) == (RunStatus.CRASHED, "dead")
    assert (
        f"its drain lock is held by backend {lock.backend_pid}, not by the run's backend "
        f"{stale_backend}" in run.error
    )
    assert bystander.poll() is None  # not signalled
    assert f"halacha  crashed  run {run.pk}" in out and "hung" not in out
    assert [k for k, _ in sup_events()] == ["crashed"]


# --- step 3: hung --------------------------------------------------------------------------------


def test_hung_threshold_counts_from_the_checkpoint_or_start_and_honours_the_override(held_lock):
    lock = held_lock("halacha")
    with freeze_time("2026-12-01T10:00:00Z") as frozen:
        DrainControl.objects.create(name="halacha", hung_after_seconds=600)
        run = make_run(
            host="other-host",
            backend_pid=lock.backend_pid,
            checkpoint=timezone.now() + timedelta(minutes=5),
        )
        frozen.tick(timedelta(minutes=15))  # 10 min after the checkpoint, 15 after the start
        tick()
        run.refresh_from_db()
        assert run.status == RunStatus.RUNNING
        frozen.tick(timedelta(seconds=1))
        out = tick()
    run.refresh_from_db()
    assert run.status == RunStatus.HUNG
    assert "pg_terminate_backend" in out and "over the 600 s threshold" in out
    # Not on this host: its drain lock's backend was terminated, so the lock is free now.
    assert drain_lock_holders(["halacha"])["halacha"] is None
    assert [k for k, _ in sup_events()] == ["hung"]


def test_hung_without_any_checkpoint_uses_the_start_and_the_settings_default(settings, held_lock):
    settings.DRAINS_HUNG_AFTER_SECONDS = 120
    lock = held_lock("halacha")
    with freeze_time("2026-12-01T10:00:00Z") as frozen:
        run = make_run(host="other-host", backend_pid=lock.backend_pid)
        frozen.tick(timedelta(seconds=120))
        tick()
        run.refresh_from_db()
        assert run.status == RunStatus.RUNNING
        frozen.tick(timedelta(seconds=1))
        out = tick()
    run.refresh_from_db()
    assert run.status == RunStatus.HUNG
    assert "start (no checkpoint yet) 121 s ago, over the 120 s threshold" in out


# --- step 4: backoff -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "kept"),
    [("fresh", True), ("progress_after", False), ("limit_run_only", True), ("past_reset", False)],
)
def test_backoff_fresh_is_kept_stale_is_cleared(case, kept):
    with freeze_time("2026-12-01T10:00:00Z") as frozen:
        t0 = timezone.now()
        limited = make_run(started_at=t0 - timedelta(minutes=5), status=RunStatus.RATE_LIMITED)
        # The run that hit the limit checkpoints its last chunk after recording the backoff:
        # that is not evidence the quota is back.
        limited.last_checkpoint_at = t0 + timedelta(seconds=1)
        limited.items_done = 3
        limited.save()
        DrainControl.objects.create(
            name="halacha",
            backoff_until=t0 + timedelta(hours=2),
            backoff_observed_at=t0,
            backoff_from_run=limited,
            backoff_reason="usage limit",
        )
        if case == "progress_after":
            make_run(
                started_at=t0 + timedelta(minutes=1),
                checkpoint=t0 + timedelta(minutes=2),
                items_done=5,
                status=RunStatus.SUCCEEDED,
            )
        frozen.tick(timedelta(hours=3) if case == "past_reset" else timedelta(minutes=30))
        out = tick()
        again = tick()
    control = DrainControl.objects.get(name="halacha")
    if kept:
        assert control.backoff_until == t0 + timedelta(hours=2)
        assert "halacha  keep_backoff  backoff until Tue 2026-12-01 14:00 IST is fresh" in out
        assert "keep_backoff" in again
        assert [k for k, _ in sup_events()] == ["keep_backoff"]  # once per episode
    else:
        assert control.backoff_until is None and control.backoff_observed_at is None
        expected = "its reset" if case == "past_reset" else "before the last successful checkpoint"
        assert "halacha  clear_backoff" in out and expected in out
        assert [k for k, _ in sup_events()] == ["clear_backoff"]


def test_progress_on_one_drain_of_a_quota_makes_every_copy_of_its_backoff_stale():
    with freeze_time("2026-12-01T10:00:00Z") as frozen:
        t0 = timezone.now()
        for name in ("halacha", "metadata"):
            DrainControl.objects.create(
                name=name,
                quota_key="shared",
                backoff_until=t0 + timedelta(hours=2),
                backoff_observed_at=t0,
            )
        make_run(
            "halacha",
            started_at=t0 + timedelta(minutes=1),
            checkpoint=t0 + timedelta(minutes=2),
            items_done=1,
            status=RunStatus.SUCCEEDED,
        )
        frozen.tick(timedelta(minutes=30))
        out = tick()
    assert "halacha  clear_backoff" in out and "metadata  clear_backoff" in out
    assert not DrainControl.objects.filter(backoff_until__isnull=False).exists()


# --- step 5: staging -----------------------------------------------------------------------------


def test_staged_rows_of_dead_runs_are_promoted_and_unpromotable_ones_are_notes(settings):
    settings.HALACHA_EXTRACTOR = "tests.support.extractors:UnconstructibleExtractor"
    good, bad = make_decisions(2)
    dead = make_run(status=RunStatus.CRASHED)
    payload = {"extractor": "t", "model": "m", "halachot": [{"rule": "R", "quote": "Q"}]}
    stage_result(drain="halacha", item_key=str(good.pk), payload=payload, run=dead)
    stage_result(drain="halacha", item_key=str(bad.pk), payload={"halachot": [{}]}, run=dead)
    out = tick()
    assert state("halacha", good)[0] == "done" and Halacha.objects.filter(decision=good).count() == 1
    assert list(StagedResult.objects.values_list("item_key", flat=True)) == [str(bad.pk)]
    assert "halacha  promote  2 staged result(s) left by dead runs: promoted 1" in out
    assert f"halacha  note  staged result for item {bad.pk} cannot be promoted" in out
    assert [k for k, _ in sup_events()] == ["promote", "note"]


def test_staged_rows_are_left_to_a_live_run(held_lock):
    (decision,) = make_decisions(1)
    lock = held_lock("halacha")
    run = make_run(backend_pid=lock.backend_pid, checkpoint=timezone.now())
    stage_result(drain="halacha", item_key=str(decision.pk), payload={"halachot": []}, run=run)
    out = tick()
    assert StagedResult.objects.count() == 1
    assert "promote" not in out


# --- step 6: re-trigger --------------------------------------------------------------------------


def test_all_preconditions_true__the_drain_is_started_detached(child_world):
    make_decisions(3)
    set_drain_burst(name="halacha", until=DEFAULT_DEADLINE, actor="op")
    out = tick("--drain", "halacha")
    assert "halacha  start  burst active until" in out
    (run,) = wait_supervisor_runs_end()
    assert run.status == RunStatus.SUCCEEDED and run.items_done == 3
    assert [k for k, _ in sup_events()] == ["start"]
    assert (child_world / "halacha-supervisor.log").exists()


def test_the_drains_own_fresh_backoff__holds_and_starts_nothing(child_world):
    make_decisions(3)
    set_drain_burst(name="halacha", until=DEFAULT_DEADLINE, actor="op")
    until = timezone.now() + timedelta(hours=1)
    DrainControl.objects.filter(name="halacha").update(
        quota_key="test-quota",
        backoff_until=until,
        backoff_observed_at=timezone.now(),
        backoff_reason="usage limit",
    )
    out = tick("--drain", "halacha")
    assert f"halacha  keep_backoff  backoff until {format_local(until)} is fresh" in out
    assert f"halacha  hold  burst active but not starting: backoff in force until {format_local(until)}\n" in out
    assert "start" not in [line.split("  ")[1] for line in out.splitlines()]
    assert not DrainRun.objects.filter(drain="halacha").exists()
    assert not (child_world / "halacha-supervisor.log").exists()
    assert [k for k, _ in sup_events()] == ["keep_backoff", "hold"]


@pytest.mark.parametrize("missing", ["burst", "enabled", "no_backoff", "backlog", "no_live_run"])
def test_each_precondition_false__no_start(missing, child_world, held_lock):
    if missing != "backlog":
        make_decisions(3)
    if missing != "burst":
        set_drain_burst(name="halacha", until=DEFAULT_DEADLINE, actor="op")
    control, _ = DrainControl.objects.get_or_create(name="halacha")
    if missing == "enabled":
        control.enabled = False
    if missing == "no_backoff":
        # Observed by another drain on the same quota: the quota is what backs off.
        control.quota_key = "shared"
        DrainControl.objects.create(
            name="metadata",
            quota_key="shared",
            backoff_until=timezone.now() + timedelta(hours=1),
            backoff_observed_at=timezone.now(),
        )
    control.save()
    if missing == "no_live_run":
        lock = held_lock("halacha")
        make_run(backend_pid=lock.backend_pid, checkpoint=timezone.now())
    out = tick("--drain", "halacha")
    time.sleep(0.5)  # a start would have created its run row by now; none may appear
    assert not DrainRun.objects.filter(trigger="supervisor").exists()
    assert not (child_world / "halacha-supervisor.log").exists()
    assert "start" not in [line.split("  ")[1] for line in out.splitlines()]
    if missing != "burst":
        assert "halacha  hold  burst active but not starting" in out


# --- the command -----------------------------------------------------------------------------------


def test_unknown_drain_is_a_command_error_listing_the_known_ones():
    with pytest.raises(CommandError, match="known drains: halacha, metadata"):
        tick("--drain", "nope")


def test_second_supervisor_exits_0_and_does_nothing_while_one_holds_the_lock():
    DrainControl.objects.create(name="halacha", burst_until=timezone.now() - timedelta(minutes=1))
    first = SupervisorLock()
    assert first.acquire()
    try:
        second = manage("supervise_drains")
    finally:
        first.release()
    assert second.returncode == 0, second.stderr
    assert "Another supervisor is running" in second.stdout
    assert DrainControl.objects.get(name="halacha").burst_until is not None
    assert not DrainEvent.objects.exists()
    third = manage("supervise_drains")
    assert third.returncode == 0, third.stderr
    assert "halacha  clear_burst" in third.stdout
    assert DrainControl.objects.get(name="halacha").burst_until is None


def test_two_supervisors_started_together__both_exit_0_and_the_work_is_done_once():
    DrainControl.objects.create(name="halacha", burst_until=timezone.now() - timedelta(minutes=1))
    children = [
        subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "supervise_drains"],
            cwd=ROOT,
            env=child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [child.communicate(timeout=120) for child in children]
    assert [child.returncode for child in children] == [0, 0], outputs
    assert DrainEvent.objects.filter(kind="clear_burst").count() == 1
    assert sum("halacha  clear_burst" in out for out, _ in outputs) == 1


def _dump() -> dict:
    return {
        model.__name__: list(model.objects.order_by("pk").values())
        for model in (DrainControl, DrainRun, DrainEvent, StagedResult)
    } | {"items": list(Item.objects.order_by("pk").values())}


def test_dry_run_prints_every_planned_action_and_changes_nothing(held_lock, child_world, settings):
    """Every kind of decision at once; --dry-run prints them all and the tables stay as they
    were (no events either); a real tick then does what the dry run said — with an extractor
    that raises when constructed (so on any call too): the supervisor spends zero quota."""
    settings.HALACHA_EXTRACTOR = "tests.support.extractors:UnconstructibleExtractor"
    decisions = make_decisions(3)
    with freeze_time("2026-12-01T10:00:00Z") as frozen:
        now = timezone.now()
        DrainControl.objects.create(
            name="metadata",
            burst_until=now + timedelta(minutes=1),
            backoff_until=now + timedelta(hours=2),
            backoff_observed_at=now,
            hung_after_seconds=60,
        )
        lock = held_lock("metadata")
        make_run("metadata", host="other-host", backend_pid=lock.backend_pid, checkpoint=now)
        dead = make_run("halacha", checkpoint=now)
        set_drain_burst(name="halacha", until=DEFAULT_DEADLINE, actor="op")
        stage_result(
            drain="halacha",
            item_key=str(decisions[0].pk),
            payload={"halachot": [{"rule": "R", "quote": "Q"}]},
            run=dead,
        )
        frozen.tick(timedelta(minutes=5))
        before = _dump()
        out = tick("--dry-run")
        assert _dump() == before
        actions = [tuple(line.split("  ")[:2]) for line in out.splitlines()]
        assert actions == [
            ("halacha", "crashed"),
            ("halacha", "promote"),
            ("halacha", "start"),
            ("metadata", "clear_burst"),
            ("metadata", "hung"),
            ("metadata", "keep_backoff"),
        ], out
        real = tick()
    assert [tuple(line.split("  ")[:2]) for line in real.splitlines()] == actions
    assert _dump() != before
    (started,) = wait_supervisor_runs_end()  # the drain it started (this test's extractor)
    assert started.status == RunStatus.SUCCEEDED and started.items_done == 2


def test_supervisor_does_not_import_extractor_backends():
    code = (
        "import django, sys; django.setup(); import drains.supervisor; "
        "from django.core.management import load_command_class; "
        "load_command_class('drains', 'supervise_drains'); "
        "print(sorted(m for m in sys.modules if m.startswith('halacha.extractors')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    assert os.path.exists(ROOT / "halacha" / "extractors" / "offline.py")  # the check can fail


def test_a_failure_of_the_supervisor_itself_is_recorded_then_exits_non_zero():
    """A step that cannot do its change (here the runs table refuses updates, for real) is an
    event of kind supervisor_error and a non-zero exit; the other drains are still handled."""
    dead = make_run("halacha", checkpoint=timezone.now())
    DrainControl.objects.create(name="metadata", burst_until=timezone.now() - timedelta(minutes=1))
    with connection.cursor() as cursor:
        cursor.execute(
            """
            CREATE FUNCTION supervisor_test_refuse_run() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'runs are frozen for an audit'; END $$;
            CREATE TRIGGER supervisor_test_refuse_run BEFORE UPDATE ON drains_drainrun
            FOR EACH ROW EXECUTE FUNCTION supervisor_test_refuse_run();
            """
        )
    out = io.StringIO()
    try:
        with pytest.raises(CommandError, match="the supervisor failed on halacha"):
            call_command("supervise_drains", stdout=out)
        child = manage("supervise_drains")
    finally:
        with connection.cursor() as cursor:
            cursor.execute(
                "DROP TRIGGER supervisor_test_refuse_run ON drains_drainrun; "
                "DROP FUNCTION supervisor_test_refuse_run();"
            )
    dead.refresh_from_db()
    assert dead.status == RunStatus.RUNNING
    (error,) = sup_events(kind="supervisor_error")[:1]
    assert "runs are frozen for an audit" in error[1]
    assert "halacha  error  the supervisor failed on this drain" in out.getvalue()
    assert DrainControl.objects.get(name="metadata").burst_until is None  # the others went on
    assert child.returncode == 1 and "the supervisor failed on halacha" in child.stderr
