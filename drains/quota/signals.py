"""What a call says about its quota: the windows' utilization, resets and status.

Every backend turns what it saw (the CLI's ``rate_limit_event`` lines, the API's
``anthropic-ratelimit-unified-*`` headers) into one ``QuotaSignal``; the runner records it
(drains/quota/store.py) after every call, answered or refused. A value that cannot be trusted
never becomes a reading: it is dropped and said in ``warnings``, for the run's log.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings

from drains.quota.kinds import lower_headers


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


# --- parsers ----------------------------------------------------------------------------------

# A reset is an estimate of a moment within the next week (or a few hours, for the 5-hour
# window); anything before this much in the past or beyond this much ahead is not a reset.
RESET_PAST_SLACK = timedelta(days=1)
RESET_MAX_AHEAD = timedelta(days=32)
EPOCH_MS_THRESHOLD = 10**11  # an epoch above this is in milliseconds
STATUSES = ("allowed", "allowed_warning", "rejected")
_WINDOW_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
# The unified headers' window names (anthropic-ratelimit-unified-<abbr>-utilization); the CLI
# maps them the same way (5h, 7d, 7d_oi = seven_day_overage_included). "overage" is extra usage,
# not a plan window: it is read as ``using_overage``, never as a reading with a ceiling.
_HEADER_ABBR = {"5h": "five_hour", "7d": "seven_day", "7d_oi": "seven_day_overage_included"}
_HEADER_WINDOW_RE = re.compile(
    r"^anthropic-ratelimit-unified-(?P<abbr>5h|7d(?:_[a-z0-9]+)?)-(?P<field>utilization|reset|status)$"
)


class _Reader:
    """Collects readings and warnings for one signal; the checks every source shares."""

    def __init__(self, *, source: str, now: datetime):
        self.source = source
        self.now = now
        self.windows: dict[str, WindowReading] = {}
        self.warnings: list[str] = []

    def warn(self, text: str) -> None:
        self.warnings.append(f"quota signal ({self.source}): {text}")

    def utilization(self, window: str, value: object) -> float | None:
        if isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            self.warn(f"{window} utilization {value!r} is not a number; ignored")
            return None
        if not 0 <= value <= 1:
            self.warn(f"{window} utilization {value!r} is outside 0..1; ignored")
            return None
        return float(value)

    def reset(self, window: str, value: object) -> datetime | None:
        if value is None or value == "":
            return None
        if isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            self.warn(f"{window} reset {value!r} is not an epoch; reset ignored")
            return None
        if value > EPOCH_MS_THRESHOLD:
            value = value / 1000
        try:
            moment = datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            moment = None
        if moment is None or not (
            self.now - RESET_PAST_SLACK <= moment <= self.now + RESET_MAX_AHEAD
        ):
            self.warn(f"{window} reset {value!r} is not a plausible epoch; reset ignored")
            return None
        return moment

    def status(self, window: str, value: object) -> str:
        if value in (None, ""):
            return ""
        if isinstance(value, str) and value in STATUSES:
            return value
        self.warn(f"{window} status {value!r} is unknown; ignored")
        return ""

    def add(
        self,
        window: object,
        utilization: object,
        resets_at: object,
        status: object,
        *,
        replace: bool = True,
    ) -> None:
        """One reading, if ``window`` is a window name and ``utilization`` a fraction. A window
        refused with no utilization given is full (1.0)."""
        if not isinstance(window, str) or not _WINDOW_NAME_RE.match(window):
            self.warn(f"window name {window!r} is not one; ignored")
            return
        if not replace and window in self.windows:
            return
        status = self.status(window, status)
        reset = self.reset(window, resets_at)
        value: float | None
        if utilization is None:
            if status != "rejected":
                return  # allowed, no figure: nothing to read (the older CLIs' usual event)
            value = 1.0
        else:
            value = self.utilization(window, utilization)
            if value is None:
                return
        self.windows[window] = WindowReading(window, value, reset, status)

    def signal(self, *, using_overage: bool) -> QuotaSignal:
        return QuotaSignal(
            windows=tuple(self.windows.values()),
            using_overage=using_overage,
            source=self.source,
            warnings=tuple(self.warnings),
        )


def from_stream_event(obj: dict[str, Any], *, now: datetime) -> QuotaSignal:
    """The signal in one CLI stream-json ``rate_limit_event`` (an empty one for any other line).

    Two shapes: ``rate_limit_info.unifiedWindows`` (CLI 2.1.259 and later: every window, each
    with ``utilization``, ``resetsAt``, ``status``) and the older top level (``rateLimitType``,
    ``resetsAt``, ``status``, and ``utilization`` only near or at the limit). Both are read; a
    window named in both takes the unifiedWindows reading.
    """
    if not isinstance(obj, dict) or obj.get("type") != "rate_limit_event":
        return QuotaSignal()
    reader = _Reader(source="cli", now=now)
    info = obj.get("rate_limit_info")
    if not isinstance(info, dict):
        reader.warn(f"rate_limit_info {info!r} is not an object; ignored")
        return reader.signal(using_overage=False)
    unified = info.get("unifiedWindows")
    if isinstance(unified, dict):
        for window, body in unified.items():
            if not isinstance(body, dict):
                reader.warn(f"{window} reading {body!r} is not an object; ignored")
                continue
            reader.add(window, body.get("utilization"), body.get("resetsAt"), body.get("status"))
    elif unified is not None:
        reader.warn(f"unifiedWindows {unified!r} is not an object; ignored")
    kind = info.get("rateLimitType")
    if kind is not None:
        reader.add(kind, info.get("utilization"), info.get("resetsAt"), info.get("status"),
                   replace=False)
    elif info.get("utilization") is not None:
        reader.warn(f"utilization {info.get('utilization')!r} names no window; ignored")
    return reader.signal(using_overage=info.get("isUsingOverage") is True)


def from_unified_headers(headers: Mapping[str, str] | None, *, now: datetime) -> QuotaSignal:
    """The signal in an API response's ``anthropic-ratelimit-unified-*`` headers (answered or
    refused); empty when there are none (an API-key account).

    Per window: ``-5h-``, ``-7d-`` (and ``-7d_<x>-``) ``utilization``, ``reset`` and ``status``;
    the top-level ``-status`` and ``-representative-claim`` name the binding window (full when
    refused). Extra usage is being spent when the plan is refused and the overage allowed (the
    CLI's own rule), or ``-overage-in-use: true``.
    """
    h = lower_headers(headers)
    if not any(name.startswith("anthropic-ratelimit-unified-") for name in h):
        return QuotaSignal()
    reader = _Reader(source="api", now=now)
    fields: dict[str, dict[str, str]] = {}
    for name, value in h.items():
        if match := _HEADER_WINDOW_RE.match(name):
            abbr = match["abbr"]
            window = _HEADER_ABBR.get(abbr) or "seven_day_" + abbr.removeprefix("7d_")
            fields.setdefault(window, {})[match["field"]] = value
    for window, body in fields.items():
        reader.add(window, body.get("utilization"), body.get("reset"), body.get("status"))
    status = h.get("anthropic-ratelimit-unified-status", "")
    claim = h.get("anthropic-ratelimit-unified-representative-claim")
    if claim and claim != "overage":
        reader.add(claim, None, h.get("anthropic-ratelimit-unified-reset"), status, replace=False)
    overage = h.get("anthropic-ratelimit-unified-overage-status", "")
    using = (status == "rejected" and overage in ("allowed", "allowed_warning")) or (
        h.get("anthropic-ratelimit-unified-overage-in-use", "").lower() == "true"
    )
    return reader.signal(using_overage=using)


# Two readings of a window whose resets are this close are of the same period of it: its
# utilization only grows within a period (a new 5-hour window opens at least 5 hours after the
# last one's reset was announced, a new week a week later).
SAME_PERIOD = timedelta(hours=1)


def same_period_span() -> timedelta:
    """SAME_PERIOD, or a fifth of the 5-hour window (``DRAINS_QUOTA_SESSION_HOURS``) when that
    is shorter: with the window compressed (bench/autopilot.py's week in minutes), its periods
    are seconds apart and an hour would take a new period's readings for the old one's (the
    full window's utilization kept under the new reset: the drains stop at a window that reset).
    The default, 5 h, gives 1 h."""
    hours = float(getattr(settings, "DRAINS_QUOTA_SESSION_HOURS", 5.0))
    return min(SAME_PERIOD, timedelta(hours=hours / 5))


def same_period(a: datetime | None, b: datetime | None) -> bool:
    return a is not None and b is not None and abs(a - b) < same_period_span()


def supersedes(new: WindowReading, new_at: datetime, known: WindowReading,
               known_at: datetime) -> bool:
    """Whether ``new`` (observed at ``new_at``) is the window's current reading rather than
    ``known``. Within one period the higher utilization is the current one, whatever order the
    answers came back in (calls in flight answer out of order); a later period (a reset moved
    ahead) replaces the earlier one, the drop in utilization being the reset; without both
    resets, the later observation wins."""
    if same_period(new.resets_at, known.resets_at):
        if new.utilization != known.utilization:
            return new.utilization > known.utilization
        return new_at >= known_at
    if new.resets_at is not None and known.resets_at is not None:
        return new.resets_at > known.resets_at
    return new_at >= known_at


def combine(*signals: QuotaSignal) -> QuotaSignal:
    """Several signals of one call (the CLI may print more than one event) as one: a later
    reading of a window replaces an earlier one; overage if the last signal that said so did."""
    windows: dict[str, WindowReading] = {}
    warnings: list[str] = []
    using = False
    source = ""
    for signal in signals:
        for reading in signal.windows:
            windows[reading.window] = reading
        warnings.extend(signal.warnings)
        if signal:
            using = signal.using_overage
        source = source or signal.source
    return QuotaSignal(tuple(windows.values()), using, source, tuple(warnings))
