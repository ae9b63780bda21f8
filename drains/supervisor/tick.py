"""One supervisor tick: read every drain's state, plan, apply, print a line and record an event
per decision (once per episode for the quiet ones). A drain whose step raises is recorded as a
``supervisor_error`` and the tick goes on with the next drain.
"""

from __future__ import annotations

import logging

from django.utils import timezone

from drains import registry, selectors
from drains.dbretry import ensure_session_timeouts
from drains.events import record_event
from drains.journal import Journal, JournalError, open_journal
from drains.models import DrainRun, EventKind
from drains.quota.autopilot import autopilot_tick
from drains.quota.store import prune_samples
from drains.selectors.runs import ControlValues
from drains.supervisor.decision import (
    ACTOR,
    QUIET_ACTIONS,
    Decision,
    Noted,
    NotStarted,
    TickResult,
)
from drains.supervisor.plan import plan_drain

logger = logging.getLogger(__name__)


def supervise(*, names: list[str] | None = None, dry_run: bool = False, write=None) -> TickResult:
    """One tick over ``names`` (default: every registered drain). ``write(line)`` prints."""
    write = write or (lambda line: logger.info("%s", line))
    names = names or registry.names()
    ensure_session_timeouts()  # the supervisor's own statements: lock and statement timeouts
    journal = _open_journal(write)
    now = timezone.now()
    # The quota autopilot first: a burst it starts is started by step 6 in this same tick.
    autopilot_tick(now=now, dry_run=dry_run, write=write)
    states, controls = selectors.supervisor_states(names)
    progress = selectors.last_progress(states, controls)
    last_events = {} if dry_run else selectors.recent_events(names, actor=ACTOR)
    decisions: list[Decision] = []
    failed: list[str] = []
    cleared: set[str] = set()
    for name in names:
        state = states[name]
        if state.control is None:
            state.control = _default_control(name)
        try:
            planned = plan_drain(
                state,
                now=now,
                controls=controls,
                last_progress=progress.get(name),
                cleared_backoffs=cleared,
                journaled=len(journal.keys(name)) if journal is not None else 0,
            )
            for decision in planned:
                if dry_run:
                    decisions.append(_dry_run(decision, name, write))
                else:
                    _apply_with_followups(decision, write, last_events, decisions)
        except Exception as exc:
            failed.append(name)
            _record_failure(name, exc, write)
    if not dry_run:
        # The quota's sample history stays bounded (DRAINS_QUOTA_SAMPLE_DAYS).
        prune_samples(now=now)
    return TickResult(decisions=decisions, failed=failed)


def _open_journal(write) -> Journal | None:
    """This host's paid results not yet in staging (None, said, when the journal cannot open)."""
    try:
        return open_journal()
    except JournalError as exc:
        write(f"supervisor: {exc}")
        return None


def _default_control(name: str) -> ControlValues:
    """The control a drain without a DrainControl row has."""
    return {
        "name": name,
        "enabled": True,
        "burst_until": None,
        "backoff_until": None,
        "hung_after_seconds": None,
        "quota_key": "",
    }


def _dry_run(decision: Decision, name: str, write) -> Decision:
    """A decision printed, not applied (a start with an empty backlog said as a hold)."""
    if decision.action == EventKind.START and not registry.get(name).pending_count():
        decision.action = EventKind.HOLD
        decision.reason = "burst active but not starting: the backlog is empty"
        decision.apply = None
    write(decision.line())
    return decision


def _apply_with_followups(decision: Decision, write, last_events,
                          decisions: list[Decision]) -> None:
    """Apply a decision, then the notes found while applying it; each goes onto ``decisions``
    once applied (a failure part-way leaves the ones applied before it there)."""
    _apply(decision, write, last_events)
    decisions.append(decision)
    for note in decision.followups:
        _apply(note, write, last_events, dedupe_kind=EventKind.NOTE)
        decisions.append(note)


def _record_failure(name: str, exc: Exception, write) -> None:
    """A drain's step raised: logged, printed and recorded as a ``supervisor_error``."""
    logger.exception("supervisor: %s failed", name)
    reason = f"the supervisor failed on this drain: {type(exc).__name__}: {exc}"[:2000]
    write(f"{name}  error  {reason}")
    try:
        record_event(
            drain=name, kind=EventKind.SUPERVISOR_ERROR, message=reason, actor=ACTOR
        )
    except Exception as db_exc:  # the database itself may be the failure
        logger.critical("supervisor: could not record the failure: %s", db_exc)


def _apply(decision: Decision, write, last_events, dedupe_kind: str | None = None) -> None:
    if decision.apply is not None:
        try:
            outcome = decision.apply()
        except NotStarted as held:
            decision.action, decision.reason, decision.apply = EventKind.HOLD, str(held), None
        except Noted as noted:
            decision.action, decision.reason = EventKind.NOTE, f"{decision.reason}, but {noted}"
            dedupe_kind = EventKind.NOTE
        else:
            if outcome:
                decision.reason = f"{decision.reason}: {outcome}"
    decision.reason = decision.reason[:2000]
    write(decision.line())
    recent = last_events.setdefault(decision.drain, [])
    if decision.action in QUIET_ACTIONS and _already_said(recent, decision.action, decision.reason):
        return
    if dedupe_kind and selectors.event_exists(
        drain=decision.drain, kind=dedupe_kind, message=decision.reason
    ):
        return
    record_event(
        drain=decision.drain,
        kind=decision.action,
        message=decision.reason,
        actor=ACTOR,
        run=DrainRun(pk=decision.run_id) if decision.run_id else None,
        data={**decision.data, **({"run": decision.run_id} if decision.run_id else {})},
    )
    recent.insert(0, (decision.action, decision.reason))


def _already_said(recent: list[tuple[str, str]], kind: str, message: str) -> bool:
    """True when this quiet decision was recorded in its current episode: no other (acting)
    supervisor event of the drain came after the same one."""
    for seen_kind, seen_message in recent:
        if (seen_kind, seen_message) == (kind, message):
            return True
        if seen_kind not in QUIET_ACTIONS:
            return False
    return False
