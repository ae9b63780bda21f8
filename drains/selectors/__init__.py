"""The read side of ``drains``: the one place the runtime, the supervisor, the operations
snapshot and the digest read drain state (DrainControl, DrainRun, DrainEvent, StagedResult).

- ``drains.selectors.runs``: what the runtime and the supervisor read while they work;
- ``drains.selectors.snapshot``: the batched reads behind the operations snapshot, handing
  over the typed rows of ``drains.selectors.rows``;
- ``drains.selectors.digest``: what the daily digest reads;
- ``drains.selectors.usage``: usage accounting per quota key and quota week (the snapshot, the
  page, the digest and the metrics).

Each returns plain data or model rows in a fixed number of queries whatever the history. What
the rows mean (alive, hung, backoff in force, burst active, stale) is decided by
drains/rules.py, never here; who holds an advisory lock is read by drains/pglock.py. Nothing
here writes. The runtime's and the supervisor's reads are re-exported here.
"""

from drains.selectors.runs import (
    ControlValues,
    DrainState,
    ProbeEvidence,
    controls_for_run,
    event_exists,
    host_fault_item_since_worked,
    last_host_block,
    last_progress,
    latest_event,
    latest_run_start,
    newest_runs,
    probe_evidence,
    recent_events,
    supervisor_states,
)

__all__ = [
    "ControlValues",
    "DrainState",
    "ProbeEvidence",
    "controls_for_run",
    "event_exists",
    "host_fault_item_since_worked",
    "last_host_block",
    "last_progress",
    "latest_event",
    "latest_run_start",
    "newest_runs",
    "probe_evidence",
    "recent_events",
    "supervisor_states",
]
