"""``manage.py supervise_drains [--dry-run] [--drain NAME]``: one supervisor tick (drains/supervisor/)."""

from __future__ import annotations

from django.core.management.base import CommandError
from django.db import connection

from drains import registry, validate
from drains.events import record_event
from drains.jobs import JobCommand
from drains.locks import SupervisorLock
from drains.models import EventKind, Trigger
from drains.runs import record_checkpoint
from drains.schema import missing_migrations
from drains.supervisor import ACTOR, supervise


class Command(JobCommand):
    job_name = "supervise_drains"
    trigger_choices = [Trigger.CRON, Trigger.MANUAL]
    help = (
        "Supervise every drain once: expire bursts, mark crashed and hung runs, clear stale "
        "backoffs, promote leftover staged results, and restart a drain a burst wants running. "
        "Cron runs it at its slots (manage.py schedule); zero quota."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Print the plan (one line per decision) and change nothing, not even events.",
        )
        parser.add_argument(
            "--drain", metavar="NAME", type=validate.choice(registry.names, "drain"),
            help="Supervise only this drain (default: every drain).",
        )
        super().add_arguments(parser)

    def handle(self, *args, dry_run, drain, trigger, **options):
        lock = SupervisorLock()
        if not lock.acquire():
            holder = lock.holder_pid()
            self.stdout.write(
                f"Another supervisor is running (backend pid {holder}); this copy exits."
            )
            return
        names = [drain] if drain else None
        try:
            result = self._dry_run(names) if dry_run else self._tick(names, trigger)
        except CommandError:
            raise
        except Exception as exc:
            message = f"supervisor tick failed: {type(exc).__name__}: {exc}"[:2000]
            if not dry_run:
                self._record_failure(message)
            raise CommandError(message) from exc
        finally:
            lock.release()
        if result is None:  # another host has the slot
            return
        if result.failed:  # dry run: nothing recorded, but still say so
            raise _failed_on(result.failed)

    def _dry_run(self, names: list[str] | None):
        missing = missing_migrations(connection)
        if missing:
            raise CommandError(
                f"The schema lacks {len(missing)} migration(s); a dry run applies none. "
                "Run manage.py migrate (or the supervisor without --dry-run) first."
            )
        return supervise(names=names, dry_run=True, write=self.stdout.write)

    def _tick(self, names: list[str] | None, trigger: str):
        # Recorded as a job run, so the schedule, the snapshot and the digest show when the
        # supervisor last ran and whether it failed.
        def tick(run):
            result = supervise(names=names, dry_run=False, write=self.stdout.write)
            if result.failed:
                raise _failed_on(result.failed)
            record_checkpoint(run=run, done=len(result.decisions))
            return result

        return self.run_job(trigger, tick, schema_progress=True)

    def _record_failure(self, message: str) -> None:
        try:
            record_event(
                drain="supervisor", kind=EventKind.SUPERVISOR_ERROR, message=message, actor=ACTOR
            )
        except Exception as db_exc:
            self.stderr.write(f"could not record the failure: {db_exc}")


def _failed_on(names: list[str]) -> CommandError:
    return CommandError(f"the supervisor failed on {', '.join(names)} (see the events).")
