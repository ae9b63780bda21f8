"""The drains tables: control rows (one per drain), runs, the event timeline, and staging.

Only the service modules write these: bursts.py owns ``burst_until``; the runtime owns runs,
checkpoints, backoff and staging; the supervisor owns run state transitions it decides on.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from drains.failures import ErrorKind
from drains.quota.kinds import LimitKind


class RunStatus(models.TextChoices):
    RUNNING = "running", "running"
    SUCCEEDED = "succeeded", "succeeded"
    STOPPED = "stopped", "stopped"
    RATE_LIMITED = "rate_limited", "rate limited"
    FAILED = "failed", "failed"
    HUNG = "hung", "hung"
    CRASHED = "crashed", "crashed"


class StopReason(models.TextChoices):
    """Why a run ended (``DrainRun.stop_reason``), or why a drain command did not start one."""

    BACKLOG_EMPTY = "backlog_empty", "backlog empty"
    MAX_ITEMS = "max_items", "normal-mode item cap"
    MAX_MINUTES = "max_minutes", "normal-mode time cap"
    DEADLINE = "deadline", "burst deadline"
    BURST_OFF = "burst_off", "burst switched off"
    DISABLED = "disabled", "drain disabled"
    BACKOFF = "backoff", "another drain on the quota hit the limit"
    PROBE_WAIT = "probe_wait", "another drain on the quota is probing it after a reset"
    SIGNAL = "signal", "SIGTERM/SIGINT"
    SUPERSEDED = "superseded", "the supervisor marked the run hung/crashed"
    RATE_LIMITED = "rate_limited", "rate limited"
    BLOCKED = "blocked", "blocked by a host fault or the breaker; a probe call unblocks"
    LOCK_LOST = "lock_lost", "drain lock lost"
    ERROR = "error", "error"
    DEAD = "dead", "process gone (marked by a new runner or the supervisor)"
    HUNG = "hung", "no checkpoint within the hung threshold"
    LOCKED = "locked", "another runner holds the drain lock"


class EventKind(models.TextChoices):
    """``DrainEvent.kind``: one list, used by the code that writes events and by every reader."""

    # operators (bursts.py, controls.py)
    BURST_ON = "burst_on", "burst on"
    BURST_OFF = "burst_off", "burst off"
    BURST_EXPIRED = "burst_expired", "burst expired"
    ENABLED = "enabled", "enabled"
    DISABLED = "disabled", "disabled"
    MODEL_CHOSEN = "model_chosen", "model and effort chosen"  # an operator's, for the drains
    QUOTA_POLICY = "quota_policy", "quota policy changed"  # drains/quota/reserve.py
    # the runtime (drains/runner)
    BACKOFF = "backoff", "backoff recorded"
    SKIPPED = "skipped", "run skipped"
    LEFTOVERS_PROMOTED = "leftovers_promoted", "leftovers promoted"
    ITEM_FAILED = "item_failed", "item failed"
    RUN_CRASHED = "run_crashed", "run marked crashed"
    RUN_CORRECTED = "run_corrected", "run counts corrected"  # drains/runs.py correct_run_counts
    NOTE = "note", "note"
    PROBE = "probe", "probe after reset"  # its outcome: ok, or refused (a new backoff)
    PROBE_WAIT = "probe_wait", "waiting for the quota's probe"
    SLOW_DOWN = "slow_down", "slowed down (per-minute limit)"
    BURST_ENDED = "burst_ended", "burst ended early (weekly limit)"
    PAUSED = "paused", "paused for an operator (spend cap)"
    # operators acting from the page or the API (drains/operator.py, drains/retries.py)
    RUN_NOW = "run_now", "run now"
    RETRY_NOW = "retry_now", "retry now (backoff cleared; the next run probes)"
    STOP_RUN = "stop_run", "stop a run"
    RETRIED = "retried", "failed items set to retry"
    # the supervisor: one kind per decision (its action), and its own failure
    CLEAR_BURST = "clear_burst", "supervisor: clear burst"
    END_BURST = "end_burst", "supervisor: end burst (weekly limit)"
    CRASHED = "crashed", "supervisor: crashed"
    HUNG = "hung", "supervisor: hung"
    CLEAR_BACKOFF = "clear_backoff", "supervisor: clear backoff"
    KEEP_BACKOFF = "keep_backoff", "supervisor: keep backoff"
    PROMOTE = "promote", "supervisor: promote"
    HOLD = "hold", "supervisor: hold"
    START = "start", "supervisor: start"
    SUPERVISOR_ERROR = "supervisor_error", "supervisor error"


# Events the snapshot lists as notes: what an operator must look at.
NOTE_KINDS = (
    EventKind.NOTE, EventKind.SUPERVISOR_ERROR, EventKind.BURST_ENDED, EventKind.PAUSED,
)


class Trigger(models.TextChoices):
    CRON = "cron", "cron"
    SUPERVISOR = "supervisor", "supervisor"
    MANUAL = "manual", "manual"


class RunMode(models.TextChoices):
    NORMAL = "normal", "normal (bounded batch)"
    BURST = "burst", "burst (until the deadline)"
    JOB = "job", "job (not a drain)"


class DrainControl(models.Model):
    """One row per drain: the single place a burst and a backoff live (G1)."""

    name = models.CharField(max_length=64, unique=True)
    enabled = models.BooleanField(default=True)
    burst_until = models.DateTimeField(
        null=True, blank=True, help_text="Burst deadline; empty means no burst."
    )
    burst_by = models.CharField(
        max_length=150, blank=True, default="",
        help_text="Who started the burst (\"autopilot\" for the quota autopilot's).",
    )
    quota_key = models.CharField(
        max_length=200,
        blank=True,
        default="",
        help_text="The quota (API key or CLI account) this drain's extractor draws on; "
        "a rate limit backs off every drain with the same key.",
    )
    backoff_until = models.DateTimeField(null=True, blank=True)
    backoff_reason = models.TextField(blank=True, default="")
    backoff_observed_at = models.DateTimeField(null=True, blank=True)
    backoff_kind = models.CharField(
        max_length=24, choices=LimitKind.choices, blank=True, default="",
        help_text="Which limit the backoff is for (drains/quota/resets.py).",
    )
    backoff_model = models.CharField(
        max_length=32, blank=True, default="", help_text="For a weekly limit of one model."
    )
    backoff_from_run = models.ForeignKey(
        "DrainRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    hung_after_seconds = models.PositiveIntegerField(
        null=True, blank=True, help_text="Override of DRAINS_HUNG_AFTER_SECONDS for this drain."
    )
    updated_by = models.CharField(max_length=150, blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class DrainRun(models.Model):
    """One execution of a drain (or a sibling job). Its checkpoint is the liveness signal."""

    drain = models.CharField(max_length=64)
    trigger = models.CharField(max_length=16, choices=Trigger.choices, default=Trigger.MANUAL)
    mode = models.CharField(max_length=16, choices=RunMode.choices, default=RunMode.NORMAL)
    host = models.CharField(max_length=255)
    pid = models.IntegerField()
    backend_pid = models.IntegerField(null=True, blank=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    last_checkpoint_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.RUNNING)
    deadline = models.DateTimeField(null=True, blank=True, help_text="Burst deadline at start.")
    backlog_at_start = models.IntegerField(null=True, blank=True)
    items_done = models.IntegerField(default=0)
    concurrency = models.PositiveSmallIntegerField(
        default=1,
        help_text="Calls in flight at once (--concurrency): the projection scales its per-call "
        "rate to it (operations/projection.py).",
    )
    extractor = models.CharField(
        max_length=200, blank=True, default="",
        help_text="The extractor and model the run was configured with (the drain's "
        "extractor_label, e.g. claude-cli:sonnet): the projection's rate counts only runs of the "
        "one configured now.",
    )
    busy_seconds = models.FloatField(
        default=0.0,
        help_text="Time the run's workers spent on items (calls, staging, promotion), summed over "
        "workers, as of the last checkpoint: the working time the projection's rate is per.",
    )
    items_failed = models.IntegerField(default=0)
    chunks = models.IntegerField(default=0)
    error = models.TextField(
        blank=True, default="",
        help_text="One line: why the run failed (the exception's own message, drains/failures.py); "
        "the traceback is in error_traceback.",
    )
    error_kind = models.CharField(
        max_length=16, choices=ErrorKind.choices, blank=True, default="",
        help_text="What kind of failure: configuration, extractor, database, input, internal.",
    )
    error_traceback = models.TextField(
        blank=True, default="", help_text="The failure's full traceback (staff only)."
    )
    stop_reason = models.CharField(
        max_length=32,
        blank=True,
        default="",
        choices=StopReason.choices,
        help_text="Why the run ended.",
    )
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    cache_creation_input_tokens = models.BigIntegerField(default=0)
    cache_read_input_tokens = models.BigIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, default=0)
    model_usage = models.JSONField(
        default=dict,
        blank=True,
        help_text="Per model the extractor reported (e.g. the CLI's modelUsage): calls, tokens, "
        "cost_usd, summed over the run.",
    )
    slot = models.DateTimeField(
        null=True,
        blank=True,
        help_text="The scheduled fire time a cron-started job serves (drains/jobs.py): one run "
        "per job and slot across all hosts.",
    )

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["drain", "slot"],
                condition=Q(slot__isnull=False),
                name="drainrun_one_run_per_job_slot",
            ),
        ]
        indexes = [
            models.Index(fields=["drain", "-started_at"], name="drainrun_drain_started"),
            models.Index(
                fields=["drain"], condition=Q(status="running"), name="drainrun_running"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.drain} run {self.pk} ({self.status})"


class DrainEvent(models.Model):
    """The audit trail and timeline: who changed what, and what the supervisor decided."""

    drain = models.CharField(max_length=64)
    run = models.ForeignKey(
        DrainRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="events"
    )
    actor = models.CharField(max_length=150)
    kind = models.CharField(max_length=48, choices=EventKind.choices)
    message = models.TextField()
    data = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField()

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [
            models.Index(fields=["drain", "-at"], name="drainevent_drain_at"),
            models.Index(fields=["-at"], name="drainevent_at"),
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.drain} {self.kind}"


class StagedResult(models.Model):
    """A raw extractor response, persisted the moment it arrives and before anything else.

    Promotion turns it into domain rows and deletes it, in one transaction. A row that
    outlives its run is promoted by the next run or the supervisor; it is never paid for twice.
    """

    drain = models.CharField(max_length=64)
    item_key = models.CharField(max_length=128)
    run = models.ForeignKey(
        DrainRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="staged"
    )
    payload = models.JSONField()
    created_at = models.DateTimeField()
    promote_attempts = models.IntegerField(default=0)
    promote_error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["drain", "item_key"], name="staged_one_per_item"),
        ]

    def __str__(self) -> str:
        return f"staged {self.drain}:{self.item_key}"


# The quota's own rows live with the quota (drains/quota/models.py); importing them here is what
# makes Django register them in this app.
from drains.quota.models import QuotaPolicy, QuotaSample, QuotaWindow  # noqa: E402, F401


class ItemStatus(models.TextChoices):
    PENDING = "pending", "pending"
    DONE = "done", "done"
    FAILED = "failed", "failed"


class Item(models.Model):
    """One drain's state of one item (a row of the drain's source, ``ref`` its primary key).

    Only drains/items.py writes these: a drain declares its source and never sees its state.
    """

    drain = models.CharField(max_length=64)
    ref = models.BigIntegerField(help_text="The source row's primary key.")
    status = models.CharField(max_length=16, choices=ItemStatus.choices,
                              default=ItemStatus.PENDING)
    attempts = models.IntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    version = models.CharField(
        max_length=128, blank=True, default="",
        help_text="The source's version field when the item was queued: a change queues it again.")
    arrived_at = models.DateTimeField()
    done_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["drain", "ref"], name="drains_item_unique"),
        ]
        indexes = [
            # The next chunk of pending work is an index range scan however large "done" grows.
            models.Index(fields=["drain", "ref"], condition=Q(status="pending"),
                         name="drains_item_pending"),
            models.Index(fields=["drain", "status"], name="drains_item_status"),
        ]

    def __str__(self) -> str:
        return f"{self.drain} #{self.ref} {self.status}"


class ItemSync(models.Model):
    """How far ``drains.items.sync`` has queued a drain's source: every row up to ``through``
    has been seen (a drain never synced has no row, and its first sync sees every row)."""

    drain = models.CharField(max_length=64, unique=True)
    through = models.BigIntegerField(default=0)
    synced_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.drain} through #{self.through}"
