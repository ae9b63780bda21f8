"""The quota's readings: the only code that writes ``QuotaWindow`` and ``QuotaSample``.

``record_signal`` stores one call's signal in ONE SQL statement (a CTE that upserts the window
rows, sets the overage flag on the key's other rows and inserts the samples), nothing for an
empty signal; ``record_signals`` stores several calls' (a run's chunk, at its checkpoint) in one
statement too. A drop in a window's utilization is a reset: the new reading is simply kept.
A reading older than the row's (calls finishing out of order) does not overwrite it.
``latest_windows`` is the read the ceiling and the command use; ``prune_samples`` keeps the
history bounded (the supervisor tick calls it). Never calls an extractor.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection

from drains.quota.models import QuotaPolicy, QuotaSample, QuotaWindow
from drains.quota.signals import QuotaSignal, WindowReading, same_period_span

_WINDOW = QuotaWindow._meta.db_table
_SAMPLE = QuotaSample._meta.db_table

# One statement: the readings as VALUES (one row per window per call, in call order), the
# upsert of the rows from each window's current reading (drains/quota/signals.py
# ``supersedes``: of the latest period, the highest utilization — calls in flight answer out of
# order, and within a period utilization only grows; a later period replaces an earlier one,
# the drop being the reset), kept only when at least as fresh as what is stored (a missing reset
# keeps a stored one that is still ahead), the overage flag of the
# latest call on the key's rows it did not name (overage is the quota's, not one window's), and
# a sample per reading for the spend rate.
_RECORD = f"""
WITH data("window", utilization, resets_at, status, observed_at, using_overage, seq) AS (
    VALUES {{values}}
),
top AS (SELECT "window", max(resets_at) AS resets_at FROM data GROUP BY "window"),
latest AS (
    SELECT DISTINCT ON (d."window") d.*
    FROM data d JOIN top t ON t."window" = d."window"
    ORDER BY d."window",
             COALESCE(d.resets_at > t.resets_at - interval '{{period}}', false) DESC,
             d.utilization DESC, d.observed_at DESC, d.seq DESC
),
last_call AS (
    SELECT observed_at, using_overage FROM data ORDER BY observed_at DESC, seq DESC LIMIT 1
),
upserted AS (
    INSERT INTO {_WINDOW} AS w
        (quota_key, "window", utilization, resets_at, status, using_overage, observed_at,
         observed_by)
    SELECT %s, d."window", d.utilization, d.resets_at, d.status, d.using_overage, d.observed_at,
           %s
    FROM latest d
    ON CONFLICT (quota_key, "window") DO UPDATE SET
        utilization = CASE WHEN {{same}} THEN GREATEST(w.utilization, EXCLUDED.utilization)
                           ELSE EXCLUDED.utilization END,
        resets_at = COALESCE(
            EXCLUDED.resets_at,
            CASE WHEN w.resets_at > EXCLUDED.observed_at THEN w.resets_at END
        ),
        status = CASE WHEN {{same}} AND w.utilization > EXCLUDED.utilization THEN w.status
                      ELSE EXCLUDED.status END,
        using_overage = EXCLUDED.using_overage,
        observed_at = EXCLUDED.observed_at,
        observed_by = EXCLUDED.observed_by
    WHERE w.observed_at <= EXCLUDED.observed_at
    RETURNING 1
),
others AS (
    UPDATE {_WINDOW} AS o SET using_overage = c.using_overage
    FROM last_call c
    WHERE o.quota_key = %s AND o."window" NOT IN (SELECT "window" FROM data)
      AND o.using_overage <> c.using_overage AND o.observed_at <= c.observed_at
    RETURNING 1
)
INSERT INTO {_SAMPLE} (quota_key, "window", utilization, resets_at, observed_at, drain, run_id)
SELECT %s, d."window", d.utilization, d.resets_at, d.observed_at, %s, %s FROM data d
"""

def _period_sql() -> tuple[str, str]:
    """The same-period span (drains/quota/signals.py ``same_period_span``) as the statement's
    interval and its test of a stored row against a new reading."""
    seconds = f"{same_period_span().total_seconds():.6f}"
    same = (
        "(w.resets_at IS NOT NULL AND EXCLUDED.resets_at IS NOT NULL "
        f"AND abs(extract(epoch FROM EXCLUDED.resets_at - w.resets_at)) < {seconds})"
    )
    return f"{seconds} seconds", same

# Signals that only say "extra usage is being spent" (no window): the flag on the key's rows.
_OVERAGE_ONLY = f"UPDATE {_WINDOW} SET using_overage = true WHERE quota_key = %s"


def record_signal(
    *, quota_key: str, drain: str, run_id: int | None, signal: QuotaSignal, now: datetime
) -> None:
    """Store what one call said of its quota: at most one statement, none for an empty signal."""
    record_signals(quota_key=quota_key, drain=drain, run_id=run_id, signals=[(signal, now)])


def record_signals(
    *,
    quota_key: str,
    drain: str,
    run_id: int | None,
    signals: Sequence[tuple[QuotaSignal, datetime]],
) -> None:
    """Store several calls' signals (each with when it was observed) in ONE statement: the runner
    writes a chunk's calls at its checkpoint. None for no signal with a reading or overage."""
    signals = [(signal, at) for signal, at in signals if signal]
    if not signals or not quota_key:
        return
    rows: list[tuple[WindowReading, datetime, bool]] = []
    for signal, at in signals:
        for reading in signal.windows:
            rows.append((reading, at, signal.using_overage))
    with connection.cursor() as cursor:
        if not rows:
            cursor.execute(_OVERAGE_ONLY, [quota_key])
            return
        values = ", ".join(
            ["(%s, %s::float8, %s::timestamptz, %s, %s::timestamptz, %s::boolean, %s::int)"]
            * len(rows)
        )
        params: list[str | float | datetime | None] = []
        for seq, (reading, at, overage) in enumerate(rows):
            params += [reading.window, reading.utilization, reading.resets_at, reading.status,
                       at, overage, seq]
        params += [quota_key, drain[:64], quota_key, quota_key, drain[:64], run_id]
        period, same = _period_sql()
        cursor.execute(_RECORD.format(values=values, period=period, same=same), params)


def latest_windows(quota_key: str | None = None) -> list[QuotaWindow]:
    """The latest reading of every window (of one quota key, or of all), by key and window."""
    rows = QuotaWindow.objects.all()
    if quota_key is not None:
        rows = rows.filter(quota_key=quota_key)
    return list(rows.order_by("quota_key", "window"))


# The readings, the policy and each window's measured call step, so that the runner's read
# between chunks stays one query (the index by key, window and time serves it). The step is the
# mean gain between consecutive samples of one run among the window's last STEP_SAMPLES; pairs
# further apart than DRAINS_QUOTA_RATE_MAX_GAP_SECONDS (a wait, not work) and pairs across a reset
# (a drop with the reset moved) are left out. A drop with the same reset is kept: calls in
# flight answer out of order, and with those small drops in, the gains of a run add up to what
# it gained, so concurrency does not inflate the step.
STEP_SAMPLES = 100
_STATE = f"""
SELECT p.id, p.weekly_reserve, p.session_reserve, p.reserve_release_hours, p.autopilot,
       w."window", w.utilization, w.resets_at, w.status, w.using_overage, w.observed_at,
       w.observed_by, st.step, st.pairs
FROM (SELECT %s::varchar AS quota_key) k
LEFT JOIN {QuotaPolicy._meta.db_table} p ON p.quota_key = k.quota_key
LEFT JOIN {_WINDOW} w ON w.quota_key = k.quota_key
LEFT JOIN LATERAL (
    SELECT avg(g.gain) AS step, count(*) AS pairs
    FROM (
        SELECT r.utilization - lag(r.utilization) OVER run AS gain,
               EXTRACT(EPOCH FROM r.observed_at - lag(r.observed_at) OVER run) AS seconds,
               abs(EXTRACT(EPOCH FROM r.resets_at - lag(r.resets_at) OVER run)) AS moved
        FROM (
            SELECT s.id, s.run_id, s.utilization, s.resets_at, s.observed_at
            FROM {_SAMPLE} s
            WHERE s.quota_key = w.quota_key AND s."window" = w."window"
              AND s.run_id IS NOT NULL
            ORDER BY s.observed_at DESC, s.id DESC
            LIMIT {STEP_SAMPLES}
        ) r
        WINDOW run AS (PARTITION BY r.run_id ORDER BY r.observed_at, r.id)
    ) g
    WHERE g.seconds <= %s AND (g.gain >= 0 OR g.moved < 1)
) st ON true
ORDER BY w."window"
"""


def quota_state(quota_key: str) -> tuple[list[QuotaWindow], QuotaPolicy | None]:
    """A quota key's readings and its policy row (None when it has none), in ONE query: what
    the runner reads between chunks. The rows are unsaved copies, for reading only; each also
    carries ``step`` (the mean step one call of the drains moved the window, None when nothing
    is measured) and ``step_pairs`` (how many pairs of readings it is the mean of), for the
    ceiling's headroom (drains/quota/ceiling.py ``call_step``)."""
    gap = float(settings.DRAINS_QUOTA_RATE_MAX_GAP_SECONDS)
    with connection.cursor() as cursor:
        cursor.execute(_STATE, [quota_key, gap])
        found = cursor.fetchall()
    policy = None
    windows = []
    for (pk, weekly, session, hours, autopilot, window, utilization, resets_at, status,
         overage, observed_at, observed_by, step, pairs) in found:
        if pk is not None and policy is None:
            policy = QuotaPolicy(id=pk, quota_key=quota_key, weekly_reserve=weekly,
                                 session_reserve=session, reserve_release_hours=hours,
                                 autopilot=autopilot)
        if window is not None:
            row = QuotaWindow(
                quota_key=quota_key, window=window, utilization=utilization,
                resets_at=resets_at, status=status, using_overage=overage,
                observed_at=observed_at, observed_by=observed_by,
            )
            row.step = None if step is None else float(step)
            row.step_pairs = int(pairs or 0)
            windows.append(row)
    return windows, policy


def known_quota_keys() -> list[str]:
    """Every quota key a drain recorded at a run start, a reading or a policy row names, sorted
    (three small queries)."""
    from drains.models import DrainControl

    keys = set(DrainControl.objects.exclude(quota_key="").values_list("quota_key", flat=True))
    keys |= set(QuotaWindow.objects.values_list("quota_key", flat=True))
    keys |= set(QuotaPolicy.objects.values_list("quota_key", flat=True))
    return sorted(keys)


def prune_samples(*, now: datetime, keep_days: int | None = None) -> int:
    """Delete the samples older than ``keep_days`` (DRAINS_QUOTA_SAMPLE_DAYS); how many went."""
    days = settings.DRAINS_QUOTA_SAMPLE_DAYS if keep_days is None else keep_days
    deleted, _ = QuotaSample.objects.filter(observed_at__lt=now - timedelta(days=days)).delete()
    return deleted
