"""The drain runner: the work loop around a paid extractor, and the ``Drain`` plugin API.

A drain class (registered in ``drains.registry``) says what its work is: which rows are its
items (its ``Source``), how to process one (call the extractor, return a JSON-able payload) and
how to promote a payload into domain rows. The runtime owns everything else, the items' state
(drains/items.py) included
(docs/architecture.md):

- one runner per drain (``drains.locks``; a second copy returns ``already_running`` at once),
  the schema gate at start, a DrainRun row, a committed checkpoint per chunk of items (or per
  minute of slow items, whichever comes first: the liveness signal);
- every response staged in its own transaction the moment it arrives, promoted in another, and
  leftover staged rows promoted before any new call (``drains.runs``);
- the stop conditions: backlog empty, the normal-mode batch cap, the burst deadline (no call
  starts after it), a rate limit (backoff on every drain of the quota), SIGTERM/SIGINT (finish
  the item, checkpoint, stop), the drain disabled or a backoff in force (no call at all), and any
  exception (run ``failed`` with the error recorded, then ``DrainRunFailed``);
- a probe after a reset (``policy.probe_due``): the first run after a backoff expired makes one
  call alone, whatever its concurrency, and opens up only when that call went through; a
  refused probe writes the new backoff at once. One probe per quota: a drain whose quota
  another drain is probing holds, without a call, until that probe's outcome is known;
- the plan by limit kind (``policy.limit_plan``, docs/rate-limits.md): an overloaded call (529)
  is retried a few times inside the run, a per-minute API limit slows the run down (fewer calls
  in flight, a short pause with jitter) instead of stopping it, and after a backoff
  ``drains.quota.actions`` ends a burst a weekly limit outlasts or pauses the drains on a spend cap.

It never reads the environment, never sleeps to wait out a quota limit (the supervisor restarts
the drain after the reset; only a per-minute limit's seconds and an overload's retries are
waited out in the run), and never calls an extractor while a backoff is in force or after the
deadline.

Modules: ``plugin`` (the ``Drain`` base class a drain subclasses), ``run`` (``run_drain``: one
run from lock to finish, its skips and its signals), ``ending`` (``RunEnd``: the status from the
stop reason, the last line, a failure recorded before it is raised), ``state`` (``RunState``, the
one run's state every part takes, and the ``Outcome`` kinds of an item), ``loop`` (``WorkLoop``:
dispatching, applying outcomes, checkpoints), ``paid`` (a paid result journaled, staged and
promoted), ``pacing`` (``CallGate``, the calls in flight and
the pause after a per-minute limit, and ``Pacing``, the paid call through it with overload
retries), ``probe`` (``ProbeClaim``, the probe after a reset), ``command`` (``DrainCommand``, the
base of every ``manage.py drain_<name>``).
"""

from drains.runner.ending import SKIPPED, DrainRunFailed, RunResult
from drains.runner.plugin import Drain, FailedItem, HostFault, ItemFailed, Processed, Source
from drains.runner.run import ALREADY_RUNNING, run_drain

__all__ = [
    "ALREADY_RUNNING",
    "SKIPPED",
    "Drain",
    "DrainRunFailed",
    "FailedItem",
    "HostFault",
    "ItemFailed",
    "Processed",
    "RunResult",
    "Source",
    "run_drain",
]
