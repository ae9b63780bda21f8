"""Rate limits: the ``RateLimited`` signal and the one reset-time parser (G1).

Every extractor turns its quota signal into ``RateLimited(reset_at, message)``; the runtime turns
that into a backoff on DrainControl. This module is the only place that reads a reset time out of
a message or a set of HTTP headers: ``parse_reset(text, now)`` and ``parse_reset_headers(headers,
now)``, both returning a ``ResetInfo``. It knows every format in docs/rate-limits.md. Beside
the reset, each ``ResetInfo`` carries the kind of limit (drains/quota/kinds.py).

It never guesses silently: a reset in the past or more than ``MAX_TRUSTED_AHEAD`` away, or no
reset at all, gives the bounded fallback (``DRAINS_FALLBACK_BACKOFF_SECONDS``) marked
``trusted=False``, and the raw text is always kept. It never calls an extractor or the network.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfoNotFoundError

from django.conf import settings
from django.utils import timezone

from drains.quota.kinds import (
    Kind,
    LimitKind,
    classify_headers,
    classify_text,
    lower_headers,
)
from drains.quota.signals import QuotaSignal
from drains.quota.wallclock import MONTHS, clock_of, next_wall_clock, zone_named

MAX_TRUSTED_AHEAD = timedelta(days=32)
EPOCH_MS_THRESHOLD = 10**11  # an epoch above this is in milliseconds


class RateLimited(Exception):
    """The extractor's quota is exhausted until ``reset_at`` (aware datetime).

    ``message`` is the raw signal (CLI text, API error and headers) exactly as received, so an
    operator can always see what the parser saw; ``info`` is the parser's full verdict.
    """

    def __init__(
        self,
        reset_at: datetime,
        message: str,
        *,
        trusted: bool = True,
        info: ResetInfo | None = None,
    ):
        self.reset_at = reset_at
        self.message = message
        self.trusted = trusted  # False when reset_at is the fallback, not a parsed time
        self.info = info
        self.kind = info.kind if info is not None else Kind()
        # What the refused call said of its windows (drains/quota/signals.py), set by the backend.
        self.quota = QuotaSignal()
        super().__init__(f"rate limited until {reset_at.isoformat()}: {message}")


@dataclass(frozen=True)
class ResetInfo:
    """What the parser made of a rate-limit signal.

    ``reset_at`` is always usable: the parsed time when ``trusted``, otherwise the fallback
    (now + DRAINS_FALLBACK_BACKOFF_SECONDS). ``parsed`` is what the signal said even when it was
    not trusted (None when nothing could be read); ``note`` says why it was not trusted.
    """

    reset_at: datetime
    trusted: bool
    source: str
    parsed: datetime | None
    note: str
    raw: str
    kind: Kind = Kind()

    def rate_limited(self, message: str | None = None) -> RateLimited:
        text = message if message is not None else self.raw
        if not self.trusted and self.note:
            text = f"{text} [reset not trusted: {self.note}]"
        return RateLimited(self.reset_at, text, trusted=self.trusted, info=self)


def overloaded(message: str, now: datetime | None = None) -> RateLimited:
    """HTTP 529 (overloaded), from either backend: no limit at all. The runtime retries the
    call a few times inside the run (``policy.limit_plan``); ``reset_at`` is the short backoff
    (DRAINS_OVERLOAD_BACKOFF_SECONDS) it takes only when the API is still overloaded after that."""
    now = _now(now)
    reset_at = now + timedelta(seconds=int(settings.DRAINS_OVERLOAD_BACKOFF_SECONDS))
    info = ResetInfo(reset_at, True, "overloaded", reset_at, "", message,
                     Kind(LimitKind.OVERLOADED))
    return info.rate_limited(message)


# --- building a verdict ---------------------------------------------------------------------


def _fallback_seconds() -> int:
    return int(settings.DRAINS_FALLBACK_BACKOFF_SECONDS)


def _verdict(
    parsed: datetime | None, *, now: datetime, source: str, raw: str, note: str = ""
) -> ResetInfo:
    """Apply the sanity bounds to a parsed reset and fill in the fallback when needed."""
    if parsed is not None:
        parsed = parsed.astimezone(UTC)
        if parsed <= now:
            note = f"the reset {parsed.isoformat()} is not after now ({now.isoformat()})"
        elif parsed - now > MAX_TRUSTED_AHEAD:
            note = (
                f"the reset {parsed.isoformat()} is more than {MAX_TRUSTED_AHEAD.days} days ahead"
            )
        else:
            return ResetInfo(parsed, True, source, parsed, "", raw)
    elif not note:
        note = "no reset time found"
    fallback = now + timedelta(seconds=_fallback_seconds())
    return ResetInfo(
        fallback, False, source if parsed is not None else "fallback", parsed, note, raw
    )


def _now(now: datetime | None) -> datetime:
    now = now or timezone.now()
    if timezone.is_naive(now):
        raise ValueError("now must be timezone-aware")
    return now.astimezone(UTC)


def _from_epoch(value: float) -> datetime | None:
    if value > EPOCH_MS_THRESHOLD:
        value = value / 1000
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        return None


# --- wall-clock forms ("resets 1pm (Europe/Lisbon)", "resets Oct 6, 1pm"): drains/quota/wallclock.py

_CLOCK = r"(?P<hour>\d{1,2})(?::(?P<minute>\d{2}))?\s*(?P<ampm>[ap]\.?m\.?)?"
_HUMAN_RE = re.compile(
    r"\b(?:resets?|reset\s+at)\s+(?:at\s+|on\s+)?"
    r"(?:(?P<month>jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?\s+(?P<day>\d{1,2})"
    r"(?:\s*,\s*|\s+at\s+|\s+))?" + _CLOCK + r"(?:\s*\((?P<tz>[^)]+)\))?",
    re.IGNORECASE,
)
_EPOCH_RE = re.compile(r"\|\s*(?P<epoch>\d{9,14})(?:\.\d+)?\b")
_RESETS_AT_RE = re.compile(r"[\"']?resetsAt[\"']?\s*:\s*(?P<epoch>\d{9,14})")
_REGAIN_RE = re.compile(
    r"regain access on\s+(?P<date>\d{4}-\d{2}-\d{2})(?:\s+at\s+(?P<time>\d{1,2}:\d{2}(?::\d{2})?))?"
    r"\s*(?P<tz>UTC|GMT|Z|[A-Za-z]+/[A-Za-z_+\-/0-9]+)?",
    re.IGNORECASE,
)
_RELATIVE_RE = re.compile(
    r"\bresets?\s+in\s+(?P<spec>(?:\d+\s*(?:d|days?|h|hrs?|hours?|m|mins?|minutes?|s|secs?|seconds?)\s*)+)",
    re.IGNORECASE,
)
_RELATIVE_PART_RE = re.compile(r"(\d+)\s*([a-z]+)", re.IGNORECASE)
_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_reset(text: str, now: datetime | None = None) -> ResetInfo:
    """``_parse_reset`` with the kind of limit the text reports (``classify_text``)."""
    return replace(_parse_reset(text, now), kind=classify_text(text))


def _parse_reset(text: str, now: datetime | None = None) -> ResetInfo:
    """Read the reset time out of a rate-limit or usage-limit message.

    Forms: ``…limit reached|<epoch s or ms>``, ``"resetsAt":<epoch>``, ``You will regain access
    on 2026-04-01 at 00:00 UTC``, ``resets in 2h``, and the wall-clock forms ``resets 3:30am
    (Europe/Moscow)``, ``resets Apr 23 at 4pm (America/Recife)``, ``reset at 5pm (Europe/Warsaw)``,
    ``resets Oct 6, 1pm`` (no zone → DRAINS_OPERATOR_TZ).
    """
    # Kept whole on purpose: the forms are tried in this order, most specific first (an epoch
    # beats a date, a date beats a wall clock), and reading that order in one place is the
    # parser's contract with docs/rate-limits.md.
    now = _now(now)
    raw = text or ""

    match = _EPOCH_RE.search(raw) or _RESETS_AT_RE.search(raw)
    if match:
        parsed = _from_epoch(int(match["epoch"]))
        return _verdict(
            parsed,
            now=now,
            source="epoch",
            raw=raw,
            note="" if parsed else f"epoch {match['epoch']} is out of range",
        )

    match = _REGAIN_RE.search(raw)
    if match:
        try:
            tz = zone_named(match["tz"] or "UTC")
            day = date.fromisoformat(match["date"])
            at = time.fromisoformat(match["time"]) if match["time"] else time(0, 0)
        except (ValueError, ZoneInfoNotFoundError) as exc:
            return _verdict(
                None, now=now, source="regain-access", raw=raw, note=f"unreadable date: {exc}"
            )
        parsed = datetime.combine(day, at).replace(tzinfo=tz)
        return _verdict(parsed, now=now, source="regain-access", raw=raw)

    match = _RELATIVE_RE.search(raw)
    if match:
        seconds = 0
        for amount, unit in _RELATIVE_PART_RE.findall(match["spec"]):
            seconds += int(amount) * _UNIT_SECONDS[unit[0].lower()]
        return _verdict(now + timedelta(seconds=seconds), now=now, source="relative", raw=raw)

    for match in _HUMAN_RE.finditer(raw):
        clock = clock_of(match)
        if clock is None:
            continue
        try:
            tz = zone_named(match["tz"])
        except (ZoneInfoNotFoundError, ValueError):
            return _verdict(
                None,
                now=now,
                source="wall-clock",
                raw=raw,
                note=f"unknown time zone {match['tz']!r}",
            )
        month = MONTHS[match["month"][:3].lower()] if match["month"] else None
        day_of_month = int(match["day"]) if match["day"] else None
        parsed = next_wall_clock(now, tz, clock, month=month, day=day_of_month)
        source = "wall-clock-date" if month else "wall-clock"
        return _verdict(
            parsed,
            now=now,
            source=source,
            raw=raw,
            note="" if parsed else f"{match.group(0)!r} names no real date",
        )

    return _verdict(None, now=now, source="fallback", raw=raw)


# --- HTTP headers (Anthropic Messages API) ----------------------------------------------------

_RESET_KINDS = ("requests", "tokens", "input-tokens", "output-tokens")


def _rfc3339(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        return None
    return None if timezone.is_naive(parsed) else parsed


def _http_date(value: str) -> datetime | None:
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed is None:
        return None
    return parsed.replace(tzinfo=UTC) if timezone.is_naive(parsed) else parsed


def _header_candidates(h: dict[str, str], now: datetime) -> list[tuple[str, datetime | None]]:
    """(source, parsed) in the order of preference the samples file gives."""
    candidates: list[tuple[str, datetime | None]] = []
    if "retry-after-ms" in h:
        try:
            candidates.append(
                ("retry-after-ms", now + timedelta(milliseconds=float(h["retry-after-ms"])))
            )
        except (ValueError, OverflowError):
            candidates.append(("retry-after-ms", None))
    if "retry-after" in h:
        value = h["retry-after"]
        parsed: datetime | None
        try:
            parsed = now + timedelta(seconds=float(value))
        except (ValueError, OverflowError):
            parsed = _http_date(value)
        candidates.append(("retry-after", parsed))

    resets: dict[str, datetime | None] = {
        kind: _rfc3339(h[f"anthropic-ratelimit-{kind}-reset"])
        for kind in _RESET_KINDS
        if f"anthropic-ratelimit-{kind}-reset" in h
    }
    exhausted = [
        kind for kind in resets if h.get(f"anthropic-ratelimit-{kind}-remaining", "").strip() == "0"
    ]
    # The latest reset among the limits that are used up; when no header says which are, the
    # latest of all (waiting too long costs a few minutes, too short costs another 429).
    chosen = [r for k in (exhausted or list(resets)) if (r := resets[k]) is not None]
    if resets:
        candidates.append(("ratelimit-reset", max(chosen) if chosen else None))

    if "anthropic-ratelimit-unified-reset" in h:
        value = h["anthropic-ratelimit-unified-reset"]
        try:
            parsed = _from_epoch(float(value))
        except ValueError:
            parsed = _rfc3339(value)
        candidates.append(("unified-reset", parsed))
    return candidates


def parse_reset_headers(
    headers: Mapping[str, str] | None, now: datetime | None = None, *, status: int | None = None
) -> ResetInfo:
    """``_parse_reset_headers`` with the kind the status and headers report."""
    return replace(_parse_reset_headers(headers, now), kind=classify_headers(headers, status=status))


def _parse_reset_headers(
    headers: Mapping[str, str] | None, now: datetime | None = None
) -> ResetInfo:
    """Read the reset time out of a 429's headers (any subset of those in the samples file).

    Preference: ``retry-after-ms``, ``retry-after`` (seconds or HTTP date), the latest
    ``anthropic-ratelimit-*-reset`` among exhausted limits, ``anthropic-ratelimit-unified-reset``.
    The first trusted candidate wins; if none is trusted, the fallback, noting the first.
    """
    now = _now(now)
    h = lower_headers(headers)
    shown = "; ".join(
        f"{name}: {value}"
        for name, value in sorted(h.items())
        if name.startswith(("retry-after", "anthropic-ratelimit-"))
    )
    verdicts = [
        _verdict(
            parsed,
            now=now,
            source=source,
            raw=shown,
            note="" if parsed else f"unreadable {source} header",
        )
        for source, parsed in _header_candidates(h, now)
    ]
    for verdict in verdicts:
        if verdict.trusted:
            return verdict
    if verdicts:
        return verdicts[0]
    return _verdict(None, now=now, source="fallback", raw=shown, note="no reset header")


# --- recognising a limit message --------------------------------------------------------------

_LIMIT_RE = re.compile(
    r"usage limit reached|limit reached|you've hit your (?:\w+ )?limit|you have hit your (?:\w+ )?limit"
    r"|out of extra usage|regain access on|rate limit|\|\s*\d{9,14}\s*$"
    r"|\bresets?\s+(?:in\s+|at\s+)?\d|\bresets\s+[a-z]{3}\w*\s+\d",
    re.IGNORECASE,
)


def is_limit_message(text: str) -> bool:
    """Whether a failure's text is a usage/rate-limit notice rather than some other error.

    Only for output already known to be a failure (non-zero exit, ``is_error``): a successful
    answer may well quote "limit reached" and must never be read as a limit.
    """
    return bool(text) and bool(_LIMIT_RE.search(text))
