"""The supervisor against real drain processes: one killed with SIGKILL (crashed), and one whose
extractor blocks forever (hung: stopped, marked, restarted, resumed from its checkpoint).

Drains run as ``manage.py drain_halacha`` children on the test database; the supervisor ticks
in-process under a frozen clock set past the hung threshold, and starts its drain as a real
detached process that inherits this test's environment.
"""

from __future__ import annotations

import io
import signal
import subprocess
import time
from collections import Counter
from datetime import timedelta

import pytest
from django.core.management import call_command
from freezegun import freeze_time

from drains.bursts import DEFAULT_DEADLINE, set_drain_burst
from drains.locks import drain_lock_holders
from drains.models import DrainControl, DrainRun, RunStatus
from halacha.models import CourtDecision
from tests import factories
from tests.support.db import child_env, database_url, popen_manage, with_settings
from tests.support.extractors import read_call_log
from tests.support.items import statuses

pytestmark = pytest.mark.django_db(transaction=True)


def make_decisions(n: int, block_at: int | None = None) -> list[CourtDecision]:
    return factories.make_decisions(n, prefix="h", marks={block_at: " BLOCKHERE"})


def tick() -> str:
    out = io.StringIO()
    call_command("supervise_drains", stdout=out)
    return out.getvalue()


def wait_until(predicate, what: str, timeout: float = 60, process: subprocess.Popen | None = None):
    limit = time.monotonic() + timeout
    while time.monotonic() < limit:
        value = predicate()
        if value:
            return value
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the drain ended before {what}: {process.communicate()}")
        time.sleep(0.02)
    raise AssertionError(f"not within {timeout} s: {what}")


@pytest.fixture
def world(monkeypatch, settings, tmp_path):
    """The environment the drains (ours and the supervisor's) run with."""
    values = {
        "DATABASE_URL": database_url(),
        "HALACHA_EXTRACTOR": "tests.support.supervisor_extractors:BlockOnceExtractor",
        "TEST_EXTRACTOR_CALL_LOG": str(tmp_path / "calls.log"),
        "TEST_EXTRACTOR_BLOCK_MARK": "BLOCKHERE",
        "TEST_EXTRACTOR_BLOCK_FLAG": str(tmp_path / "block-once"),
        # the drains the supervisor starts run with a chunk of 2 (tests/support/settings.py)
        **with_settings({}, DRAINS_CHUNK_SIZE=2),
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    (tmp_path / "block-once").touch()
    settings.DRAINS_LOG_DIR = tmp_path / "log"
    settings.DRAINS_HUNG_KILL_GRACE_SECONDS = 0.5
    return tmp_path


def test_run_killed_with_sigkill_is_marked_crashed(world):
    make_decisions(3, block_at=2)
    child = popen_manage("drain_halacha", "--trigger", "manual", env=with_settings(child_env()))
    try:
        wait_until(
            lambda: any(o == "block" for *_, o in read_call_log(world / "calls.log")),
            "the blocking call",
            process=child,
        )
        (run,) = DrainRun.objects.all()
        assert drain_lock_holders(["halacha"])["halacha"] == run.backend_pid
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    # The server notices the closed socket and frees the lock; until then the run counts as live.
    wait_until(lambda: drain_lock_holders(["halacha"])["halacha"] is None, "the lock freed")
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING
    out = tick()
    run.refresh_from_db()
    assert run.status == RunStatus.CRASHED
    assert f"halacha  crashed  run {run.pk} (pid {child.pid}" in out


def test_hung_run_is_stopped_marked_and_restarted_and_resumes_from_its_checkpoint(world):
    """6 decisions, checkpoint every 2; the extractor blocks on decision 5. With a 5 s threshold
    the supervisor leaves the run alone 4 s after its checkpoint, stops it at 6 s (SIGTERM, then
    SIGKILL: the call never returns), marks it hung and starts a new run, which calls 5 and 6
    only."""
    decisions = make_decisions(6, block_at=5)
    set_drain_burst(name="halacha", until=DEFAULT_DEADLINE, actor="op")
    DrainControl.objects.filter(name="halacha").update(hung_after_seconds=5)
    child = popen_manage("drain_halacha", "--trigger", "manual", env=with_settings(child_env()))
    try:
        wait_until(
            lambda: any(o == "block" for *_, o in read_call_log(world / "calls.log")),
            "the blocking call",
            process=child,
        )
        (run,) = DrainRun.objects.all()
        wait_until(
            lambda: DrainRun.objects.filter(pk=run.pk, items_done=4).exists(), "checkpoint of 4"
        )
        run.refresh_from_db()
        with freeze_time(run.last_checkpoint_at + timedelta(seconds=4)):
            early = tick()
        run.refresh_from_db()
        assert run.status == RunStatus.RUNNING, early
        assert "halacha  hold  burst active but not starting: run" in early
        with freeze_time(run.last_checkpoint_at + timedelta(seconds=6)):
            out = tick()
        child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == -signal.SIGKILL  # SIGTERM could not end a call that never returns
    run.refresh_from_db()
    assert run.status == RunStatus.HUNG and run.items_done == 4
    lines = out.splitlines()
    assert lines[0].startswith(f"halacha  hung  run {run.pk}"), out
    assert "SIGTERM then SIGKILL" in lines[0]
    assert lines[1].startswith("halacha  start  burst active until"), out

    def restarted_done():
        runs = list(DrainRun.objects.filter(trigger="supervisor"))
        return runs if runs and runs[0].status != RunStatus.RUNNING else None

    (again,) = wait_until(restarted_done, "the restarted run's end")
    assert again.status == RunStatus.SUCCEEDED and again.items_done == 2
    calls = Counter(pk for _, _, pk, _ in read_call_log(world / "calls.log"))
    assert calls == Counter({d.pk: 2 if d.external_id == "h-0005" else 1 for d in decisions})
    assert set(statuses()) == {"done"}
    # The run's row is finished before its process writes the last line: wait for the line.
    log = world / "log" / "halacha-supervisor.log"
    wait_until(lambda: f"run {again.pk} succeeded" in log.read_text(), "the run's last line")
