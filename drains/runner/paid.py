"""A paid result kept, in the worker that was paid for it: on local disk first (the journal,
drains/journal.py), then staged in PostgreSQL and promoted. Nothing paid for is lost: a result
the journal cannot hold is staged directly, one the run may no longer promote (fenced) stays
staged for whoever holds the lock next.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from drains.journal import Journal, JournalError
from drains.models import StopReason
from drains.runner.plugin import Processed
from drains.runner.state import ItemOutcome, Outcome, RunState
from drains.staging import RunSuperseded, promote_staged, stage_result


def keep_paid(state: RunState, key: str, processed: Processed[Any]) -> ItemOutcome:
    """Journal, stage and promote the paid result of item ``key``. Raises only what the
    journal's write raises besides ``JournalError`` (the caller makes it the item's error)."""
    # Paid for: on local disk first (drains/journal.py), then staged in PostgreSQL.
    journaled, journal_error = journal_paid(state, key, processed)
    # An item whose result stays in the journal is counted by its replay, not here.
    kept_usage = None if journaled else processed.usage
    try:
        inserted = state.db.call(
            f"staging the result of item {key}",
            lambda: stage_result(
                drain=state.name, item_key=key, payload=processed.payload,
                run=state.run_row,
            ),
        )
        if state.stop_reason == StopReason.LOCK_LOST or not state.lock_held():
            # The lock session ended (while the database was away, or terminated on
            # its own): staged, promoted by whoever holds the lock next, never here.
            return ItemOutcome(Outcome.SUPERSEDED, key, usage=kept_usage,
                               journaled=journaled)
        # When an older staged row won, promote that one (it was paid for first).
        state.db.call(
            f"promoting the result of item {key}",
            lambda: promote_staged(
                drain=state.name,
                item_key=key,
                payload=processed.payload if inserted else None,
                run=state.run_row,
            ),
        )
    except RunSuperseded:
        return ItemOutcome(Outcome.SUPERSEDED, key, usage=kept_usage, journaled=journaled)
    except Exception as exc:
        return ItemOutcome(Outcome.ERROR, key, usage=kept_usage, error=exc,
                           journaled=journaled)
    return ItemOutcome(Outcome.DONE, key, usage=processed.usage, journaled=journaled,
                       fatal=journal_error)


def journal_paid(
    state: RunState, key: str, processed: Processed[Any]
) -> tuple[bool, JournalError | None]:
    """(journaled, the error when the journal cannot be written). A journal that fails does
    not lose this result (it is staged directly); the run stops before its next call."""
    return _journal(state, lambda journal: journal.record(
        drain=state.name, item_key=key, run_id=state.row.pk, payload=processed.payload,
        usage=processed.usage,
    ))


def journal_failure(
    state: RunState, key: str, usage: Mapping[str, Any] | None
) -> tuple[bool, JournalError | None]:
    """A failed call is a call: on local disk first too, so that its run's row counts it (and
    its usage) even when the run dies before its next checkpoint."""
    return _journal(state, lambda journal: journal.record_failure(
        drain=state.name, item_key=key, run_id=state.row.pk, usage=usage,
    ))


def _journal(
    state: RunState, write: Callable[[Journal], None]
) -> tuple[bool, JournalError | None]:
    if state.journal is None:
        return False, None
    try:
        write(state.journal)
    except JournalError as exc:
        state.stop(StopReason.ERROR)  # at once: no further call starts
        return False, exc
    return True, None
