"""Test extractors for the drain runtime, chosen with ``HALACHA_EXTRACTOR=tests.support.extractors:Name``.

They are honest fakes of a paid backend, and like every backend they know no drain: each answers
the one model call (``call(ModelCall)``) with the calling drain's own offline rule (for the
halacha drain: the halachot its cue phrases find, e.g. one per ``tests/factories.py`` decision,
quoting its first sentence), at a price (``USAGE``). Each call is appended to a call log (one line
per call, written when the call *starts*: ``<unix time> <pid> <item pk> <outcome>``) so a test
can count calls across real processes. Behaviour is set through the environment, so child
``manage.py`` processes get it too:

- ``TEST_EXTRACTOR_CALL_LOG``: the call log file (no log when unset);
- ``TEST_EXTRACTOR_SLEEP``: seconds each call takes (SleepingExtractor: default 0.2);
- ``TEST_EXTRACTOR_FAIL_MARK``: calls whose prompt contains it raise ``ExtractionError``
  (with a paid raw reply and usage);
- ``TEST_EXTRACTOR_RATE_LIMIT_AFTER``: calls this process makes before every later call raises
  ``RateLimited`` (RateLimitingExtractor: default 0);
- ``TEST_EXTRACTOR_LIMIT_MESSAGE``: the limit text, read by the one reset parser (default
  "Claude AI usage limit reached|<now + 1 h>");
- ``TEST_EXTRACTOR_QUOTA_KEY``: the quota key (default "test-quota");
- ``TEST_EXTRACTOR_FIRST_SLEEP``: seconds the process's first call takes, answered or refused
  (a slow probe after a reset, during which another process starts);
- ``TEST_EXTRACTOR_QUOTA_SIGNAL``: "1" makes every answer carry a subscriber's quota signal
  (the 5-hour and weekly windows, low and far from their resets), as the real CLI reports it.

``HookExtractor.hook`` (in-process tests only) is called with each call's item before it returns.
"""

from __future__ import annotations

import os
import re
import threading
import time
from datetime import timedelta
from pathlib import Path

from django.utils import timezone

from drains.quota.resets import parse_reset
from drains.quota.signals import QuotaSignal, WindowReading
from halacha.extractors.base import ExtractionError, Extractor, ModelCall, ModelReply

USAGE = {
    "input_tokens": 120,
    "output_tokens": 30,
    "cache_creation_input_tokens": 7,
    "cache_read_input_tokens": 50,
    "cost_usd": 0.0015,
}
_LOG_LOCK = threading.Lock()
_FIRST_CALL = threading.Event()  # set once this process has made its first call


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else default


def read_call_log(path: Path) -> list[tuple[float, int, int, str]]:
    """The calls in a call log: (unix time, pid, decision pk, outcome)."""
    if not Path(path).exists():
        return []
    calls = []
    for line in Path(path).read_text().splitlines():
        stamp, pid, pk, outcome = line.split()
        calls.append((float(stamp), int(pid), int(pk), outcome))
    return calls


def _quota_signal() -> QuotaSignal:
    if os.environ.get("TEST_EXTRACTOR_QUOTA_SIGNAL") != "1":
        return QuotaSignal()
    now = timezone.now()
    return QuotaSignal(
        windows=(WindowReading("five_hour", 0.1, now + timedelta(hours=4), "allowed"),
                 WindowReading("seven_day", 0.2, now + timedelta(days=5), "allowed")),
        source="cli",
    )


def first_sentence(text: str) -> str:
    match = re.match(r"\s*(.+?[.!?])(?=\s|$)", text, re.S)
    return (match.group(1) if match else text).strip()


class InstantExtractor(Extractor):
    """Answers at once, with the drain's offline rule, at a price."""

    name = "test"
    model = "test-model-1"
    default_sleep = 0.0

    def quota_key(self) -> str:
        return os.environ.get("TEST_EXTRACTOR_QUOTA_KEY", "test-quota")

    def _log(self, request: ModelCall, outcome: str) -> None:
        path = os.environ.get("TEST_EXTRACTOR_CALL_LOG")
        if not path:
            return
        line = f"{time.time():.6f} {os.getpid()} {getattr(request.item, 'pk', 0)} {outcome}\n"
        with _LOG_LOCK, open(path, "a", encoding="utf-8") as log:
            log.write(line)

    def _first_call_pause(self) -> None:
        with _LOG_LOCK:
            first = not _FIRST_CALL.is_set()
            _FIRST_CALL.set()
        pause = _env_float("TEST_EXTRACTOR_FIRST_SLEEP", 0.0)
        if first and pause:
            time.sleep(pause)

    def _reply(self, request: ModelCall) -> ModelReply:
        text = request.offline()
        return ModelReply(text=text, usage=dict(USAGE), raw={"reply": text}, backend=self.name,
                          model=self.model, quota=_quota_signal())

    def call(self, request: ModelCall) -> ModelReply:
        return self._reply(request)


class CountingExtractor(InstantExtractor):
    """Logs every call, then behaves as the environment says (sleep, fail mark)."""

    def call(self, request: ModelCall) -> ModelReply:
        mark = os.environ.get("TEST_EXTRACTOR_FAIL_MARK")
        failing = bool(mark) and mark in request.user
        self._log(request, "fail" if failing else "ok")
        self._first_call_pause()
        pause = _env_float("TEST_EXTRACTOR_SLEEP", self.default_sleep)
        if pause:
            time.sleep(pause)
        if failing:
            raise ExtractionError(
                f"the reply for {getattr(request.item, 'external_id', '?')} is not JSON",
                raw="I cannot help with that.",
                usage=dict(USAGE),
            )
        return self._reply(request)


class SleepingExtractor(CountingExtractor):
    """Each call takes TEST_EXTRACTOR_SLEEP seconds (default 0.2): a slow paid API."""

    default_sleep = 0.2


class BlockingExtractor(CountingExtractor):
    """Logs the call and never returns: a hung backend."""

    def call(self, request: ModelCall) -> ModelReply:
        self._log(request, "block")
        threading.Event().wait()
        raise AssertionError("unreachable")


class RateLimitingExtractor(CountingExtractor):
    """Answers TEST_EXTRACTOR_RATE_LIMIT_AFTER calls, then every call is a usage limit."""

    def __init__(self):
        self.calls = 0
        self._lock = threading.Lock()

    def call(self, request: ModelCall) -> ModelReply:
        allowed = int(_env_float("TEST_EXTRACTOR_RATE_LIMIT_AFTER", 0))
        with self._lock:
            self.calls += 1
            limited = self.calls > allowed
        if not limited:
            return super().call(request)
        self._log(request, "limited")
        self._first_call_pause()
        message = os.environ.get("TEST_EXTRACTOR_LIMIT_MESSAGE") or (
            f"Claude AI usage limit reached|{int(timezone.now().timestamp()) + 3600}"
        )
        raise parse_reset(message, timezone.now()).rate_limited(message)


class RaisingExtractor(CountingExtractor):
    """Every call fails with an unexpected error (not an item failure): a broken backend."""

    def call(self, request: ModelCall) -> ModelReply:
        self._log(request, "crash")
        raise RuntimeError("backend exploded")


class UnconstructibleExtractor(CountingExtractor):
    """Cannot even be constructed (a missing key): nothing may need it to promote."""

    def __init__(self):
        raise RuntimeError("UnconstructibleExtractor was constructed")


class HookExtractor(CountingExtractor):
    """Calls ``HookExtractor.hook(item)`` before answering (in-process tests)."""

    hook = None

    def call(self, request: ModelCall) -> ModelReply:
        reply = super().call(request)
        if HookExtractor.hook is not None:
            HookExtractor.hook(request.item)
        return reply
