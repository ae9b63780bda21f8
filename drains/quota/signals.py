"""What a call says about its quota: the windows' utilization, resets and status.

Every backend turns what it saw (the CLI's ``rate_limit_event`` lines, the API's
``anthropic-ratelimit-unified-*`` headers) into one ``QuotaSignal``; the runner records it
(drains/quota/store.py) after every call, answered or refused. A value that cannot be trusted
never becomes a reading: it is dropped and said in ``warnings``, for the run's log.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class WindowReading:
    """One window of one quota as one call saw it.

    ``window`` is the signal's own name (``five_hour``, ``seven_day``, ``seven_day_opus``, ...);
    ``utilization`` a fraction 0..1; ``resets_at`` an estimate (the weekly reset drifts);
    ``status`` ``allowed``, ``allowed_warning`` or ``rejected`` ("" when not said).
    """

    window: str
    utilization: float
    resets_at: datetime | None
    status: str = ""


@dataclass(frozen=True)
class QuotaSignal:
    """Every window one call reported, whether extra usage was being spent, and what was ignored."""

    windows: tuple[WindowReading, ...] = ()
    using_overage: bool = False
    source: str = ""  # "cli" (stream-json rate_limit_event) or "api" (unified headers)
    warnings: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.windows) or self.using_overage
