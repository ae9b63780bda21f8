"""Once per cron slot across all hosts, for every scheduled job that is not a drain.

Several hosts may install the same crontab (docs/deploy.md). A drain guards itself with its
lock, but a sibling job — the digest, the court fetch, the supervisor tick — would simply run
once per host: the digest emailed twice, the feed fetched twice. So a job started by cron
claims its *slot*, the scheduled fire time it serves, on its run row: the first host to start
the slot does the work, the others are told "already done for the 07:12 slot by host-b (run
42)" and exit 0. A manual run (``--trigger manual``, the default from a shell) claims nothing
and is never refused.

The slot comes from the schedule, not from the moment the process happened to start: the fire
time ``run_scheduler`` passes in (``--scheduled-for``), else the job's latest fire time in
``CRONJOBS`` at or before now. A host whose clock runs up to ``EARLY_TOLERANCE`` ahead, or one
that starts late, still names the same slot as the others. The claim is a check and an insert
under a transaction-scoped advisory lock on (job, slot), with a unique constraint on the run
row's (drain, slot) behind it.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, ClassVar, TypeVar

from croniter import croniter
from django.core.management.base import CommandParser
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.utils import timezone

from drains import schedule, validate
from drains.failures import describe_failure
from drains.models import DrainRun, RunMode, RunStatus, StopReason, Trigger
from drains.runs import finish_even_after_db_error, finish_run, start_run
from drains.schema import ensure_schema
from drains.trigger import add_trigger_argument
from drains.validate import CheckedCommand

T = TypeVar("T")

logger = logging.getLogger(__name__)

#: First half of the slot lock key: ASCII "SLOT". Fixed; never reuse it.
SLOT_LOCK_NAMESPACE = 0x534C4F54
#: A host whose clock is this far ahead of the others still names the slot they name.
EARLY_TOLERANCE = timedelta(seconds=30)


class SlotTaken(Exception):
    """This job's slot was already started, by this host or another."""

    def __init__(self, *, slot: datetime, run: DrainRun):
        self.slot = slot
        self.run = run
        local = timezone.localtime(slot, schedule.cron_tz())
        super().__init__(
            f"already done for the {local:%H:%M} slot by {run.host} (run {run.pk}); this copy exits."
        )


def current_slot(
    name: str, *, now: datetime | None = None, scheduled_for: datetime | None = None
) -> datetime | None:
    """The fire time that a cron start of the job whose runs are named ``name`` serves:
    ``scheduled_for`` when the start was told it, else found in the schedule."""
    if scheduled_for is not None:
        return scheduled_for.replace(second=0, microsecond=0)
    job = next((j for j in schedule.scheduled_jobs() if schedule.run_name(j) == name), None)
    if job is None:
        return None  # not in the schedule: nothing to share with other hosts
    start = (now or timezone.now()).astimezone(schedule.cron_tz()) + EARLY_TOLERANCE
    return croniter(job.expression, start + timedelta(seconds=1)).get_prev(datetime)


def slot_key(name: str, slot: datetime) -> int:
    return zlib.crc32(f"{name}@{slot.timestamp():.0f}".encode()) & 0x7FFFFFFF


def claim(*, name: str, trigger: str, slot: datetime) -> DrainRun:
    """Start ``name``'s run for ``slot``, or raise SlotTaken naming the run that has it."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)",
                           [SLOT_LOCK_NAMESPACE, slot_key(name, slot)])
        taken = DrainRun.objects.filter(drain=name, slot=slot).first()
        if taken is not None:
            raise SlotTaken(slot=slot, run=taken)
        try:
            with transaction.atomic():
                return start_run(drain=name, trigger=trigger, mode=RunMode.JOB, slot=slot)
        except IntegrityError:
            # The unique constraint behind the lock: someone got there without taking it.
            raise SlotTaken(slot=slot, run=DrainRun.objects.get(drain=name, slot=slot)) from None


def claims_a_slot(trigger: str) -> bool:
    return trigger == Trigger.CRON


@contextmanager
def job_run(
    *, name: str, trigger: str = Trigger.CRON, scheduled_for: datetime | None = None
) -> Iterator[DrainRun]:
    """Record a sibling job (not a drain) as a DrainRun with mode ``job``.

    ``with job_run(name="fetch_decisions", trigger="cron") as run: ...`` — the run ends ``succeeded``, or
    ``failed`` with the error recorded *before* the exception goes on (django-crontab swallows
    exceptions, so the row is where an operator sees the failure). Ctrl-C ends it ``stopped``.
    The body may call ``record_checkpoint(run=run, done=n)`` to report progress.

    A cron start claims the job's slot first (below): when another host, or an
    earlier start, already has it, ``SlotTaken`` is raised before anything is done.
    """
    slot = current_slot(name, scheduled_for=scheduled_for) if claims_a_slot(trigger) else None
    if slot is not None:
        run = claim(name=name, trigger=trigger, slot=slot)
    else:
        run = start_run(drain=name, trigger=trigger, mode=RunMode.JOB)
    try:
        yield run
    except BaseException as exc:
        interrupted = isinstance(exc, KeyboardInterrupt)
        try:
            finish_even_after_db_error(
                run=run,
                status=RunStatus.STOPPED if interrupted else RunStatus.FAILED,
                stop_reason=StopReason.SIGNAL if interrupted else StopReason.ERROR,
                **describe_failure(exc).fields(),
            )
        except DatabaseError:
            # The job's own failure is what the operator must see; it goes on below. The
            # bookkeeping failure is logged with its traceback, not dropped.
            logger.exception("could not record the end of job run %s (%s)", run.pk, name)
        raise
    else:
        finish_run(run=run, status=RunStatus.SUCCEEDED)


JOB_CHECKS: list[str] = ["models", "caches", "compatibility", "commands", "files", "translation",
                         "schedule"]
"""The system checks a cron job runs before its work (``requires_system_checks``): those that
guard what a job reads (models, the cache, the schedule). The admin's, the URL conf's, the
templates' and static files' checks are the web server's and ``manage.py check``'s: they import
the URL conf, the API and the schema machinery, about 0.2 s of CPU per job start."""


class JobCommand(CheckedCommand):
    """A once-per-slot job's command (the digest, the fetch, the supervisor tick): its
    ``--trigger`` option, the schema gate, its run row (``job_run``) and the one line a start
    prints when another host, or an earlier start, already has the slot."""

    job_name: ClassVar[str]
    requires_system_checks = JOB_CHECKS
    trigger_choices: ClassVar[list[Trigger] | None] = None  # None: every trigger
    scheduled_for: datetime | str | None = None

    def execute(self, *args: Any, **options: Any) -> Any:
        # As given (a call_command keyword may be text); checked by the time run_job reads it.
        self.scheduled_for = options.get("scheduled_for")
        return super().execute(*args, **options)

    def add_arguments(self, parser: CommandParser) -> None:
        add_trigger_argument(parser, default=Trigger.MANUAL, choices=self.trigger_choices)

    def run_job(
        self, trigger: str, work: Callable[[DrainRun], T], *, schema_progress: bool = False
    ) -> T | None:
        """``work(run)`` inside the job's run row, after the schema gate (its progress printed
        when ``schema_progress``); None, after its one line, when the slot is taken."""
        ensure_schema(stdout=self.stdout if schema_progress else None)
        try:
            given = self.scheduled_for
            scheduled_for = None if given is None else validate.aware_datetime(given)
            with job_run(name=self.job_name, trigger=trigger, scheduled_for=scheduled_for) as run:
                return work(run)
        except SlotTaken as taken:
            self.stdout.write(f"{self.job_name}: {taken}")
            return None
