"""What a failed run says: one classified line, and the full traceback kept beside it.

The owner of "why did this run fail": ``describe_failure(exc)`` turns an exception into the
fields a failed DrainRun stores — ``error`` (one line: the exception's own message, never
"Traceback (most recent call last):"), ``error_kind`` (configuration, extractor, database,
input, internal) and ``error_traceback`` (the whole traceback, bounded) — and ``reason_line``
is the one sentence every surface shows (page, API, ``schedule``, digest, metrics label).

The drains package knows no drain's exceptions: an exception class says what kind of failure
it is with a ``failure_kind`` attribute (the domain's extraction, record and fetch errors do);
Django's and the database's own exceptions are classified here. Nothing here writes.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from dataclasses import dataclass

from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError
from django.db.models import TextChoices

REASON_MAX_CHARS = 300
TRACEBACK_MAX_CHARS = 8000


class ErrorKind(TextChoices):
    CONFIGURATION = "configuration", "configuration"
    EXTRACTOR = "extractor", "extractor"
    DATABASE = "database", "database"
    INPUT = "input", "input"
    INTERNAL = "internal", "internal (a bug: see the traceback)"


@dataclass(frozen=True)
class Failure:
    error: str  # one line
    error_kind: str  # an ErrorKind value
    error_traceback: str

    def fields(self) -> dict[str, str]:
        return {"error": self.error, "error_kind": self.error_kind,
                "error_traceback": self.error_traceback}


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        link = link.__cause__ or (None if link.__suppress_context__ else link.__context__)


def classify(exc: BaseException) -> str:
    """The kind of ``exc``: the first exception of its chain (outermost first) that says."""
    for link in _chain(exc):
        declared = getattr(link, "failure_kind", None)
        if declared in ErrorKind.values:
            return declared
        if isinstance(link, ImproperlyConfigured):
            return ErrorKind.CONFIGURATION
        if isinstance(link, DatabaseError) or type(link).__module__.startswith("psycopg"):
            return ErrorKind.DATABASE
    return ErrorKind.INTERNAL


def one_line(text: str, limit: int = REASON_MAX_CHARS) -> str:
    """``text`` on one line (whitespace runs collapsed), clipped with an ellipsis at ``limit``."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def exception_line(exc: BaseException) -> str:
    """``Type: message`` of the exception itself (a wrapper that only says "failed" gives way
    to what it wraps when its own message is empty)."""
    message = str(exc).strip()
    if not message:
        for link in list(_chain(exc))[1:]:
            if str(link).strip():
                return one_line(f"{type(exc).__name__}: {type(link).__name__}: {link}")
        return type(exc).__name__
    return one_line(f"{type(exc).__name__}: {message}")


def traceback_text(exc: BaseException) -> str:
    """The whole traceback (with its causes), keeping its end when it is too long."""
    text = "".join(traceback.format_exception(exc)).strip()
    if len(text) > TRACEBACK_MAX_CHARS:
        text = "…\n" + text[-(TRACEBACK_MAX_CHARS - 2):]
    return text


def describe_failure(exc: BaseException) -> Failure:
    return Failure(error=exception_line(exc), error_kind=classify(exc),
                   error_traceback=traceback_text(exc))


def reason_line(*, error: str, error_kind: str = "") -> str:
    """What a surface shows for a run's error: ``configuration error: ImproperlyConfigured: …``.

    Rows written before the error was split may still hold a traceback in ``error``: their
    last line (the exception's own) is shown, not "Traceback (most recent call last):"."""
    text = (error or "").strip()
    if not text:
        return ""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if lines and lines[0].startswith("Traceback (most recent call last)"):
        text = legacy_reason(text)
    else:
        text = lines[0]
    text = one_line(text)
    return f"{error_kind} error: {text}" if error_kind else text


def legacy_reason(text: str) -> str:
    """The exception line of a stored traceback: its last line that is not indented."""
    for line in reversed(text.strip().splitlines()):
        if line.strip() and not line.startswith((" ", "\t")) and line.strip() != "…":
            return line.strip()
    return text.strip().splitlines()[0]
