"""Importing court decisions: the one write path for CourtDecision rows from outside data.

A record is one JSON object (see ``RECORD_HELP``); files are JSONL, one record a line. Every record
is validated first and written in its own transaction, so a bad line is reported (source, line
number, message) and skipped, and a record is never half-imported. Upsert by ``external_id``: a
changed text resets the halacha and metadata extraction, because what was extracted no longer
describes the decision. The ``import_decisions`` command and the court-fetch job both call this.

This module never calls an extractor and never deletes a decision.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal

import psycopg
from django.db import DataError, IntegrityError, OperationalError, transaction

from halacha.models import CourtDecision
from halacha.records import (  # the record format; re-exported for the importer's callers
    MAX_RECORD_BYTES,
    RECORD_FIELDS,
    RECORD_HELP,
    NotJsonLine,
    RecordError,
    guess_language,
    parse_line,
    too_long,
    validate_record,
)

__all__ = [
    "MAX_RECORD_BYTES",
    "RECORD_FIELDS",
    "RECORD_HELP",
    "ImportPathError",
    "ImportReport",
    "RecordError",
    "guess_language",
    "import_file",
    "import_lines",
    "import_paths",
    "import_record",
    "jsonl_files",
    "parse_line",
    "text_digest",
    "validate_record",
]

Outcome = Literal["added", "updated", "unchanged"]


class ImportPathError(ValueError):
    """A path given to import_paths that is neither a JSONL file nor a folder of them."""

    failure_kind = "input"  # drains/failures.py


@dataclass
class ImportReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    bad: int = 0
    errors: list[tuple[str, int, str]] = field(default_factory=list)
    lines: int = 0
    files: int = 0
    not_json: int = 0  # lines that are not JSON at all (or not UTF-8)

    @property
    def good(self) -> int:
        return self.added + self.updated + self.unchanged

    @property
    def nothing_parsed(self) -> bool:
        """Not one line was JSON: the input is not JSON(L) at all (an HTML page, a truncated
        file), which fails as a whole rather than as so many bad records."""
        return self.lines > 0 and self.not_json == self.lines

    def count(self, outcome: Outcome) -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)

    def reject(self, source: str, line: int, message: str) -> None:
        self.bad += 1
        self.errors.append((source, line, message))

    def merge(self, other: ImportReport) -> None:
        self.added += other.added
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.bad += other.bad
        self.errors.extend(other.errors)
        self.lines += other.lines
        self.files += other.files
        self.not_json += other.not_json

    def summary(self) -> str:
        return (
            f"{self.added} added, {self.updated} updated, {self.unchanged} unchanged, "
            f"{self.bad} bad"
        )


# --- writing ----------------------------------------------------------------------------------


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def import_record(clean: dict) -> Outcome:
    """Insert or update one validated record in one transaction (a savepoint when the caller
    already has one open); say which it was."""
    with transaction.atomic():
        decision = (
            CourtDecision.objects.select_for_update()
            .filter(external_id=clean["external_id"])
            .first()
        )
        outcome, _ = _write(decision, clean)
        return outcome


# What a drain made of the old text that lives on the decision itself. (Its halachot are
# deleted; each drain queues the decision again because its text_sha256 changed: drains/items.py.)
_RESET_ON_NEW_TEXT: dict[str, list[str]] = {"judges": [], "parties": []}


def _write(decision: CourtDecision | None, clean: dict) -> tuple[Outcome, CourtDecision]:
    """Apply ``clean`` to ``decision`` (row-locked by the caller; None: not there yet).

    Runs inside the caller's transaction; each write has its own savepoint, so a refused write
    leaves the transaction usable and nothing of this record behind.
    """
    if decision is None:
        try:
            with transaction.atomic():  # a savepoint: a concurrent importer may win the race
                fields = {"language": guess_language(clean["text"]), **clean}
                created = CourtDecision.objects.create(
                    **fields, text_sha256=text_digest(clean["text"])
                )
            return "added", created
        except IntegrityError:
            decision = CourtDecision.objects.select_for_update().get(
                external_id=clean["external_id"]
            )

    changed = [
        key
        for key, value in clean.items()
        if key not in ("external_id", "text") and getattr(decision, key) != value
    ]
    text_changed = decision.text != clean["text"]
    if not changed and not text_changed:
        return "unchanged", decision
    with transaction.atomic():
        for key in changed:
            setattr(decision, key, clean[key])
        if text_changed:
            decision.text = clean["text"]
            decision.text_sha256 = text_digest(clean["text"])
            # What was extracted described the old text: the rules, their quotes and the
            # metadata no longer match it. Delete the halachot in this same transaction; the
            # save queues the decision for every drain again, so no stale rule survives.
            decision.halachot.all().delete()
            for key, value in _RESET_ON_NEW_TEXT.items():
                setattr(decision, key, value)
            changed += ["text", "text_sha256", *_RESET_ON_NEW_TEXT]
        decision.save(update_fields=[*changed, "updated_at"])
    return "updated", decision


def _refused(exc: Exception) -> str:
    return f"the database refused the record: {exc}".strip()


ProgressCallback = Callable[[ImportReport, str], None]

BATCH_SIZE = 200
"""Records committed together. Each record still has its own savepoint, so a record is never
half-imported; batching only saves a commit (an fsync) per record."""


def _is_deadlock(exc: OperationalError) -> bool:
    return isinstance(exc.__cause__, psycopg.errors.DeadlockDetected)


def _import_batch(
    batch: list[tuple[int, str]], source: str, report: ImportReport, seen: dict[str, int]
) -> None:
    """Validate a batch, then write it in one transaction: its existing rows are locked with one
    query, in external_id order (so two importers queue instead of deadlocking), and a record
    that needs no change costs no further query."""
    outcome = ImportReport()
    cleaned: list[tuple[int, dict]] = []
    for lineno, line in batch:
        try:
            clean = parse_line(line)
        except NotJsonLine as exc:
            outcome.not_json += 1
            outcome.reject(source, lineno, str(exc))
            continue
        except RecordError as exc:
            outcome.reject(source, lineno, str(exc))
            continue
        first = seen.setdefault(clean["external_id"], lineno)
        if first != lineno:
            # Two versions of one decision in one input: which is meant cannot be known, so
            # the first is kept and the later one reported (not silently "1 updated").
            outcome.reject(
                source, lineno,
                f'"external_id" {clean["external_id"]!r} already came on line {first}; the '
                "first is kept, this one skipped",
            )
            continue
        cleaned.append((lineno, clean))
    if cleaned:
        try:
            _write_batch(cleaned, source, outcome)
        except OperationalError as exc:
            # Another writer (the court fetch, an operator's import) can still cross our locks;
            # PostgreSQL breaks the tie by failing one side. Redo the batch a record at a time,
            # which holds one row lock at a time and so cannot deadlock.
            if not _is_deadlock(exc):
                raise
            outcome = ImportReport(
                errors=list(outcome.errors), bad=outcome.bad, not_json=outcome.not_json
            )
            for lineno, clean in cleaned:
                try:
                    outcome.count(import_record(clean))
                except (DataError, IntegrityError) as exc:
                    outcome.reject(source, lineno, _refused(exc))
    outcome.errors.sort(key=lambda error: error[1])
    report.merge(outcome)


def _write_batch(cleaned: list[tuple[int, dict]], source: str, outcome: ImportReport) -> None:
    ids = sorted({clean["external_id"] for _, clean in cleaned})
    with transaction.atomic():
        existing = {
            d.external_id: d
            for d in CourtDecision.objects.select_for_update()
            .filter(external_id__in=ids)
            .order_by("external_id")
        }
        for lineno, clean in cleaned:
            key = clean["external_id"]
            try:
                result, existing[key] = _write(existing.get(key), clean)
                outcome.count(result)
            except (DataError, IntegrityError) as exc:
                existing.pop(key, None)  # its in-memory state may be half-applied: re-read it
                outcome.reject(source, lineno, _refused(exc))


def _import_numbered(
    numbered: Iterable[tuple[int, str]],
    source: str,
    report: ImportReport,
    progress: ProgressCallback | None,
    progress_every: int,
) -> None:
    batch: list[tuple[int, str]] = []
    shown = report.lines // progress_every
    seen: dict[str, int] = {}  # external_id -> the line it first came on, in this input

    def flush() -> None:
        nonlocal shown
        _import_batch(batch, source, report, seen)
        batch.clear()
        if progress is not None and report.lines // progress_every > shown:
            shown = report.lines // progress_every
            progress(report, source)

    for lineno, line in numbered:
        if lineno == 1:
            line = line.removeprefix("\ufeff")
        if not line.strip():
            continue
        report.lines += 1
        batch.append((lineno, line))
        if len(batch) >= BATCH_SIZE or (progress and report.lines % progress_every == 0):
            flush()
    if batch:
        flush()


def import_lines(
    lines: Iterable[str],
    source: str,
    *,
    progress: ProgressCallback | None = None,
    progress_every: int = 1000,
    report: ImportReport | None = None,
) -> ImportReport:
    """Import JSONL lines (numbered from 1) from ``source`` (a name for the report)."""
    report = report if report is not None else ImportReport()
    _import_numbered(enumerate(lines, 1), source, report, progress, progress_every)
    return report


def _read_lines(handle: BinaryIO, source: str, report: ImportReport) -> Iterator[tuple[int, str]]:
    """(line number, text) for each line, refusing over-long or non-UTF-8 lines as it goes.

    An over-long line is skipped in chunks, never held in memory whole.
    """
    lineno = 0
    while True:
        chunk = handle.readline(MAX_RECORD_BYTES + 1)
        if not chunk:
            return
        lineno += 1
        if len(chunk) > MAX_RECORD_BYTES and not chunk.endswith(b"\n"):
            size = len(chunk)
            while chunk and not chunk.endswith(b"\n"):
                chunk = handle.readline(1024 * 1024)
                size += len(chunk)
            report.lines += 1
            report.reject(source, lineno, too_long(size - 1 if chunk.endswith(b"\n") else size))
            continue
        try:
            yield lineno, chunk.decode("utf-8")
        except UnicodeDecodeError as exc:
            report.lines += 1
            report.not_json += 1
            report.reject(source, lineno, f"not UTF-8: byte {exc.start + 1} of the line")


def import_file(
    path: Path, *, progress: ProgressCallback | None = None, progress_every: int = 1000,
    report: ImportReport | None = None,
) -> ImportReport:  # fmt: skip
    report = report if report is not None else ImportReport()
    source = str(path)
    with open(path, "rb") as handle:
        _import_numbered(
            _read_lines(handle, source, report), source, report, progress, progress_every
        )
    report.files += 1
    return report


def jsonl_files(paths: Iterable[str | Path]) -> list[Path]:
    """Expand paths: a file as is, a folder to its ``*.jsonl`` files (sorted, recursively)."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            try:
                found = sorted(p for p in path.rglob("*.jsonl") if p.is_file())
            except OSError as exc:  # a folder below it that cannot be listed (/proc, say)
                raise ImportPathError(
                    f"{path}: a folder below it cannot be read ({exc}); name the folder of "
                    "the files to import"
                ) from None
            if not found:
                raise ImportPathError(f"{path} is a folder with no *.jsonl files in it")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise ImportPathError(f"{path} does not exist (expected a JSONL file or a folder)")
    return files


def import_paths(
    paths: Iterable[str | Path],
    *,
    progress: ProgressCallback | None = None,
    progress_every: int = 1000,
) -> ImportReport:
    """Import every JSONL file named, or found under a folder named. Raises ImportPathError
    before importing anything when a path does not exist."""
    report = ImportReport()
    for path in jsonl_files(paths):
        import_file(path, progress=progress, progress_every=progress_every, report=report)
    return report
