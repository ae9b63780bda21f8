"""The daily digest: what each drain did in the last 24 hours, mailed to the operators.

Per drain: items done, what it produced (in its own product's words), bursts, backoffs and
failed runs; per quota key, what
it has spent so far this quota week (drains/selectors/usage.py), its windows' latest readings
and the week's forecast, worded as the page words them (drains/quota/wording.py); then the sibling
jobs' runs and failures, so a failing court fetch is seen the next morning. It only reads
(runs, events, decisions, controls) and sends one email through Django's email backend; it
never changes a drain, a run or a burst.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import EmailMessage
from django.urls import reverse
from django.utils import timezone

from drains import registry, rules
from drains.clock import format_local
from drains.failures import one_line, reason_line
from drains.models import DrainControl, DrainEvent, DrainRun, EventKind, RunStatus, StopReason
from drains.quota import policy
from drains.quota.kinds import LimitKind, describe_kind
from drains.quota.wording import forecast_text, window_text
from drains.schedule import scheduled_jobs
from drains.selectors import digest as reads
from drains.selectors.quota import QuotaEntry, quota_entries
from drains.selectors.usage import QuotaWeekUsage, usage_by_week
from drains.wording import plural
from operations.usage import usage_text

WINDOW = timedelta(hours=24)
FAILED = (RunStatus.FAILED, RunStatus.CRASHED, RunStatus.HUNG)
BURST_STARTED = reads.BURST_STARTED


@dataclass(frozen=True)
class Failure:
    name: str
    run_id: int
    status: str
    at: datetime
    error: str


@dataclass
class DrainDigest:
    name: str
    items_done: int = 0
    items_failed: int = 0
    runs: int = 0
    produced: int | None = None  # how many of its product the drain made (None: it makes none)
    product: str = ""  # its product's plural name
    bursts_started: list[DrainEvent] = field(default_factory=list)
    bursts_ended: list[DrainEvent] = field(default_factory=list)
    burst_until: datetime | None = None  # in force now
    rate_limited_runs: int = 0
    blocked_runs: int = 0  # runs a host fault or the breaker stopped
    blocked: str = ""  # now: blocked by a host fault, and why (its reason and what to do)
    backoff_until: datetime | None = None  # in force now
    backoff_reason: str = ""
    backoff_kind: str = ""
    slow_downs: int = 0  # per-minute limits that slowed a run down
    paused: list[DrainEvent] = field(default_factory=list)  # paused by a spend cap
    enabled: bool = True  # now
    failures: list[Failure] = field(default_factory=list)


@dataclass
class JobDigest:
    name: str
    runs: int = 0
    succeeded: int = 0
    failures: list[Failure] = field(default_factory=list)


@dataclass
class Digest:
    since: datetime
    until: datetime
    drains: list[DrainDigest]
    jobs: list[JobDigest]
    usage: list[QuotaWeekUsage] = field(default_factory=list)  # this quota week, per quota key
    quotas: list[QuotaEntry] = field(default_factory=list)  # the windows and forecast, per key

    @property
    def failure_count(self) -> int:
        return sum(len(d.failures) for d in self.drains) + sum(len(j.failures) for j in self.jobs)


def _failure(run: DrainRun, name: str) -> Failure:
    return Failure(
        name=name,
        run_id=run.pk,
        status=run.status,
        at=run.finished_at or run.started_at,
        error=reason_line(error=run.error, error_kind=run.error_kind) or "(no error recorded)",
    )


def build_digest(*, now: datetime | None = None) -> Digest:
    until = now or timezone.now()
    since = until - WINDOW
    drain_names = registry.names()
    job_names = [job.name for job in scheduled_jobs() if job.drain is None]
    drains = {name: DrainDigest(name) for name in drain_names}
    jobs = {name: JobDigest(name) for name in job_names}
    _count_runs(drains, jobs, reads.runs_in_window([*drain_names, *job_names], since=since,
                                                   until=until))
    for name, d in drains.items():
        cls = registry.get(name)
        # How many items it finished in the window, from the items themselves (exact, however
        # long the runs that did the work lasted).
        d.items_done = cls.done_between(since, until)
        d.produced, d.product = cls.produced_between(since, until), cls.product_names[1]
    _count_events(drains, reads.burst_events(drain_names, since=since, until=until))
    for control in reads.controls(drain_names):
        _control_now(drains[control.name], control, until)
    usage = usage_by_week(now=until, weeks=1)
    return Digest(since=since, until=until, drains=list(drains.values()), jobs=list(jobs.values()),
                  usage=usage, quotas=quota_entries(now=until))


def _count_runs(drains: dict[str, DrainDigest], jobs: dict[str, JobDigest],
                runs: Iterable[DrainRun]) -> None:
    """Each run in the window counted on its drain's or its job's digest."""
    for run in runs:
        if run.drain in drains:
            d = drains[run.drain]
            d.runs += 1
            d.items_failed += run.items_failed
            if run.status == RunStatus.RATE_LIMITED:
                d.rate_limited_runs += 1
            if run.stop_reason == StopReason.BLOCKED:
                d.blocked_runs += 1
            if run.status in FAILED:
                d.failures.append(_failure(run, run.drain))
        else:
            j = jobs[run.drain]
            j.runs += 1
            j.succeeded += run.status == RunStatus.SUCCEEDED
            if run.status in FAILED:
                j.failures.append(_failure(run, run.drain))


def _count_events(drains: dict[str, DrainDigest], events: Iterable[DrainEvent]) -> None:
    """The window's slow-downs, pauses and burst starts and ends, on their drain's digest."""
    for event in events:
        d = drains[event.drain]
        if event.kind == EventKind.SLOW_DOWN:
            d.slow_downs += 1
        elif event.kind == EventKind.PAUSED:
            d.paused.append(event)
        elif event.kind == BURST_STARTED:
            d.bursts_started.append(event)
        else:
            d.bursts_ended.append(event)


def _control_now(d: DrainDigest, control: DrainControl, now: datetime) -> None:
    """What is in force now: enabled, the burst, the backoff (its first line of reason)."""
    d.enabled = control.enabled
    if rules.burst_active(control.burst_until, now=now):
        d.burst_until = control.burst_until
    if not policy.backoff_active(control.backoff_until, now=now):
        return
    if control.backoff_kind == LimitKind.HOST_FAULT:
        reason = one_line(control.backoff_reason, 600)
        d.blocked = f"{reason}; next probe {_local(control.backoff_until)}"
    else:
        d.backoff_until = control.backoff_until
        d.backoff_kind = describe_kind(control.backoff_kind, control.backoff_model)
        d.backoff_reason = (
            control.backoff_reason.strip().splitlines()[0][:200]
            if control.backoff_reason.strip()
            else ""
        )


def _local(moment: datetime) -> str:
    return format_local(moment)


def render_digest(digest: Digest) -> tuple[str, str]:
    """(subject, plain-text body)."""
    done = sum(d.items_done for d in digest.drains)
    day = format_local(digest.until, "%a %d %b %Y")
    failures = digest.failure_count
    subject = (
        f"[drains] digest {day}: {done} items done, "
        f"{failures} failure{'s' if failures != 1 else ''}"
    )
    out = [
        f"Drains digest for {_local(digest.since)} - {_local(digest.until)} "
        f"({settings.DRAINS_OPERATOR_TZ}).",
        "",
    ]
    for d in digest.drains:
        out.extend(_drain_lines(d))
        out.append("")
    out.extend(_usage_lines(digest))
    if digest.jobs:
        out.append("Other jobs")
        for j in digest.jobs:
            out.append(
                f"  {j.name}: {plural(j.runs, 'run')}, {j.succeeded} succeeded, "
                f"{len(j.failures)} failed"
            )
            out.extend(_failure_lines(j.failures))
        out.append("")
    out.append(
        "Details: the /operations page, or `manage.py schedule` for the last run of each job."
    )
    return subject, "\n".join(out) + "\n"


def _drain_lines(d: DrainDigest) -> list[str]:
    """A drain's part: items done, its product, bursts, backoffs, slow-downs, pauses, failures."""
    out = [f"Drain {d.name}",
           f"  items done:         {d.items_done} ({plural(d.runs, 'run')}, "
           f"{plural(d.items_failed, 'item')} failed)"]
    if d.produced is not None:
        out.append(f"  {d.product + ' made:':<19} {d.produced}")
    burst = f"{len(d.bursts_started)} started, {len(d.bursts_ended)} ended"
    if d.burst_until:
        burst += f"; active until {_local(d.burst_until)}"
    out.append(f"  bursts:             {burst}")
    for event in [*d.bursts_started, *d.bursts_ended]:
        out.append(f"    {_local(event.at)}  {event.message} ({event.actor})")
    backoff = f"{d.rate_limited_runs} rate-limited run{'s' if d.rate_limited_runs != 1 else ''}"
    if d.backoff_until:
        backoff += f"; backing off until {_local(d.backoff_until)}"
        if d.backoff_kind:
            backoff += f", {d.backoff_kind}"
        if d.backoff_reason:
            backoff += f" ({d.backoff_reason})"
    out.append(f"  backoffs:           {backoff}")
    if d.blocked_runs or d.blocked:
        out.append(f"  blocked:            {plural(d.blocked_runs, 'run')} stopped by a host fault "
                   "or the breaker")
    if d.blocked:
        out.append(f"  BLOCKED now: {d.blocked}")
    if d.slow_downs:
        out.append(f"  slowed down:        {d.slow_downs} time{'s' if d.slow_downs != 1 else ''}"
                   " by per-minute API limits (no backoff)")
    for event in d.paused:
        out.append(f"  PAUSED {_local(event.at)}: {event.message}")
    if not d.enabled:
        out.append("  disabled now: no run starts until an operator enables it")
    out.append(f"  failures:           {len(d.failures)}")
    out.extend(_failure_lines(d.failures))
    return out


def _usage_lines(digest: Digest) -> list[str]:
    """Per quota key: this week's spending, then its windows and forecast; then the keys with
    readings but no drain run this week."""
    out = []
    quotas = {q.key: q for q in digest.quotas}
    for u in digest.usage:
        out.append(f"Quota {u.quota_key or '(no quota key)'}")
        out.append(f"  {usage_text(u)}")
        out.append(
            f"  tokens: {u.input_tokens} input, {u.output_tokens} output, "
            f"{u.cache_creation_input_tokens} cache creation, {u.cache_read_input_tokens} cache read"
        )
        out.append(f"  calls: {u.calls} ({u.refused_calls} refused), {plural(u.runs, 'run')}")
        if u.quota_key in quotas:
            out.extend(_quota_lines(quotas.pop(u.quota_key), digest.until))
        out.append("")
    for q in quotas.values():  # a key with readings but no drain run this week
        out.append(f"Quota {q.key}")
        out.extend(_quota_lines(q, digest.until))
        out.append("")
    return out


def _quota_lines(q: QuotaEntry, now: datetime) -> list[str]:
    """The key's windows as the page words them, then its forecast (or no-signal) line."""
    return [*(f"  {window_text(w, now)}" for w in q.windows), f"  {forecast_text(q, now)}"]


def _failure_lines(failures: list[Failure]) -> list[str]:
    site = settings.DRAINS_SITE_URL
    return [f"    {_local(f.at)}  run {f.run_id} {f.status}: {f.error}\n"
            f"      {site}{reverse('operations:run', args=[f.run_id])}" for f in failures]


@dataclass(frozen=True)
class DigestResult:
    subject: str
    body: str
    recipients: list[str]
    sent: int  # messages handed to the email backend (0 when there are no recipients)


def send_digest(
    *, now: datetime | None = None, recipients: list[str] | None = None, dry_run: bool = False
) -> DigestResult:
    """Build the digest and email it to ``recipients`` (default: DIGEST_RECIPIENTS).

    Email errors propagate: the job that called this records the run as failed.
    """
    digest = build_digest(now=now)
    subject, body = render_digest(digest)
    to = list(settings.DIGEST_RECIPIENTS if recipients is None else recipients)
    sent = 0
    if to and not dry_run:
        sent = EmailMessage(subject=subject, body=body, to=to).send(fail_silently=False)
    return DigestResult(subject=subject, body=body, recipients=to, sent=sent)
