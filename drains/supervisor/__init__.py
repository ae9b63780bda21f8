"""The supervisor (docs/operations.md, "The schedule"; the six steps in plan.py): one tick over every drain, six steps each.

It owns the decisions the supervisor takes and the run state transitions it decides on
(``crashed``, ``hung``); every other write goes through the owning service (bursts.py for a
burst, runs.py for runs, staging and backoff). A tick reads the state of all drains in a fixed
number of queries (never per run of history), decides, and — unless it is a dry run — applies
each decision, printing one line "drain  action  reason" and writing a DrainEvent
(actor "supervisor") for each.

Liveness is a run's checkpoint (or its start when it has none yet) and its drain lock, never a
log file. This module must never import or call an extractor: it spends zero quota. Promotion
uses the drain class's ``promote`` (no extractor); a new run is started as a detached
``manage.py <drain command> --trigger supervisor`` process that the supervisor never waits for.

The concept has three parts: the state is read by ``drains.selectors``; ``plan`` decides (pure
but for the clock it is given); ``actions`` carries out one decision through the owning service;
``tick`` runs the tick, prints and records. The supervisor's own lock is ``drains.locks``'.
"""

from drains.supervisor.decision import ACTOR, Decision, TickResult
from drains.supervisor.plan import plan_drain
from drains.supervisor.tick import supervise

__all__ = ["ACTOR", "Decision", "TickResult", "plan_drain", "supervise"]
