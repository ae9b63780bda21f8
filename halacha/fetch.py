"""The court fetch: bring new decisions in from the configured sources, through the importer.

Sources (settings): ``FETCH_INBOX_DIR`` — a folder into which JSON (an array of records, or one
record) and JSONL files are dropped; each file is moved to ``imported/`` once read (with an
``.errors`` note beside it listing any bad records) or to ``failed/`` when it cannot be read
as JSON at all — and ``FETCH_FEED_URL``, an optional HTTP(S) feed answering a JSON array or
JSONL. Every record goes through ``halacha.importer`` (idempotent by external_id; a bad
record is reported and skipped, never half-imported).

A feed that answers an error, cannot be reached, or sends something that is not JSON raises
``FetchError`` after the inbox has been imported: the job records a failed run; nothing here
swallows it. This module never calls an extractor and never deletes a decision.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from drains import validate
from drains.wording import plural
from halacha.importer import ImportReport, import_file, import_lines

INBOX_SUFFIXES = (".json", ".jsonl")
MAX_FEED_BYTES = 256 * 1024 * 1024


class FetchError(Exception):
    """A source could not be read (feed error, unreachable, not JSON); the message says which.

    ``report`` holds what was imported before the failure (the inbox), once known.
    """

    report: FetchReport | None = None
    failure_kind = "input"  # drains/failures.py: what a failed run says it was


class NotJson(ValueError):
    """A whole payload (file or feed body) is neither a JSON array/object nor JSONL."""

    failure_kind = "input"


@dataclass
class MovedFile:
    name: str
    destination: Path
    report: ImportReport | None  # None when the file failed as a whole
    error: str = ""


@dataclass
class FetchReport:
    files: list[MovedFile] = field(default_factory=list)
    feed: ImportReport | None = None
    total: ImportReport = field(default_factory=ImportReport)

    def summary(self) -> str:
        failed = sum(1 for f in self.files if f.report is None)
        parts = [f"{plural(len(self.files) - failed, 'inbox file')} imported"]
        if failed:
            parts.append(f"{failed} failed")
        if self.feed is not None:
            parts.append(f"feed {plural(self.feed.lines, 'record')}")
        return f"{', '.join(parts)}: {self.total.summary()}"


def record_lines(text: str, source: str) -> list[str]:
    """The records of a payload as JSONL lines (numbered from 1 by the importer).

    A payload starting with ``[`` is a JSON array of records; one starting with ``{`` that
    parses whole is a single record; anything else is read as JSONL, line by line, so that a
    broken line is reported on its own. Raises ``NotJson`` when an array does not parse.
    JSONL lines end at ``\n`` (or ``\r\n``) only, as ``import_decisions`` reads a file: a
    record may hold U+2028 or U+0085, at which ``str.splitlines`` would cut it in two.
    """
    text = text.removeprefix("\ufeff")
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            records = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise NotJson(
                f"{source} starts like a JSON array but is not valid JSON: {exc.msg} "
                f"(line {exc.lineno}, column {exc.colno})"
            ) from None
        if not isinstance(records, list):
            raise NotJson(f"{source} is not a JSON array of records")
        return [json.dumps(record, ensure_ascii=False) for record in records]
    if stripped.startswith("{"):
        try:
            record = json.loads(stripped)
        except json.JSONDecodeError:
            pass  # not one object: it is JSONL, whose lines the importer reports one by one
        else:
            return [json.dumps(record, ensure_ascii=False)]
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the newline that ends the last line starts no record
    return [line.removesuffix("\r") for line in lines]


def _unique_destination(folder: Path, name: str, now: datetime) -> Path:
    target = folder / name
    if not target.exists():
        return target
    stem, suffix = os.path.splitext(name)
    return folder / f"{stem}.{now:%Y%m%dT%H%M%S%f}{suffix}"


def _move(path: Path, folder: Path, now: datetime) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = _unique_destination(folder, path.name, now)
    os.replace(path, target)
    return target


def _write_errors(target: Path, report: ImportReport | None, error: str) -> None:
    lines = (
        [error]
        if error
        else [
            f"{source}:{line}: {message}"
            for source, line, message in (report.errors if report is not None else [])
        ]
    )
    if lines:
        Path(f"{target}.errors").write_text("\n".join(lines) + "\n", encoding="utf-8")


def fetch_inbox(inbox: Path, report: FetchReport) -> None:
    """Import every *.json / *.jsonl file directly in ``inbox`` (oldest name first) and move it.

    Writers must drop finished files (write elsewhere or under a dot-name, then rename into the
    inbox): a dot-file or any other suffix is left alone.
    """
    inbox.mkdir(parents=True, exist_ok=True)
    now = timezone.now()
    candidates = sorted(
        p
        for p in inbox.iterdir()
        if p.is_file() and p.suffix.lower() in INBOX_SUFFIXES and not p.name.startswith(".")
    )
    for path in candidates:
        source = f"inbox/{path.name}"
        reading = ImportReport()
        file_report: ImportReport | None = reading  # None: the file failed as a whole
        error = ""
        try:
            if path.suffix.lower() == ".jsonl":
                import_file(path, report=reading)
            else:
                text = path.read_text(encoding="utf-8")
                import_lines(record_lines(text, source), source, report=reading)
                reading.files += 1
            if reading.nothing_parsed:
                # Not one line was JSON (a truncated `{"a":`, an HTML page): nothing of it
                # was imported, and it is a broken file, not a file of bad records.
                raise NotJson(f"not one of its {reading.lines} line(s) is JSON "
                              f"({reading.errors[0][2]})")
        except FileNotFoundError:
            continue  # another fetch moved it first
        except (NotJson, UnicodeDecodeError) as exc:
            file_report, error = None, f"{source}: {exc}"
        if file_report is not None:
            for i, (_, line, message) in enumerate(file_report.errors):
                file_report.errors[i] = (source, line, message)
            report.total.merge(file_report)
        target = _move(path, inbox / ("imported" if file_report is not None else "failed"), now)
        _write_errors(target, file_report, error)
        report.files.append(MovedFile(path.name, target, file_report, error))


def fetch_feed(url: str, report: FetchReport, *, timeout: float) -> None:
    try:
        validate.http_url(url)  # never file://, ftp:// or a bare word: the docs promise HTTP(S)
    except ValueError as exc:
        raise FetchError(f"FETCH_FEED_URL: {exc}") from None
    request = urllib.request.Request(
        url,
        headers={
            "Accept": "application/json, application/x-ndjson, application/jsonl",
            "User-Agent": "drains-fetch/1",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read(MAX_FEED_BYTES + 1)
            charset = response.headers.get_content_charset() or "utf-8"
    except urllib.error.HTTPError as exc:
        detail = exc.read(500).decode("utf-8", "replace").strip()
        exc.close()
        raise FetchError(
            f"the feed {url} answered HTTP {exc.code} {exc.reason}"
            + (f": {detail}" if detail else "")
        ) from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise FetchError(f"the feed {url} could not be reached: {reason}") from None
    if len(body) > MAX_FEED_BYTES:
        raise FetchError(f"the feed {url} sent more than {MAX_FEED_BYTES // 1024 // 1024} MiB")
    try:
        text = body.decode(charset)
    except (UnicodeDecodeError, LookupError) as exc:
        raise FetchError(f"the feed {url} sent a body that is not {charset} text: {exc}") from None
    try:
        lines = record_lines(text, "feed")
    except NotJson as exc:
        raise FetchError(f"the feed {url}: {exc}") from None
    feed = ImportReport()
    _validate_json_payload(lines, url)
    report.feed = import_lines(lines, "feed", report=feed)
    report.total.merge(report.feed)


def _validate_json_payload(lines: list[str], url: str) -> None:
    """Refuse a feed body of which not one line is JSON (an HTML error page, a login page)
    before a record of it is imported: the run fails instead of counting "75 bad"."""
    body = [line for line in lines if line.strip()]
    for line in body:
        try:
            json.loads(line)
        except ValueError:
            continue
        except RecursionError:
            return
        return
    if body:
        first = body[0].strip()
        raise FetchError(
            f"the feed {url} did not answer JSON: not one of its {len(body)} line(s) parses "
            f"(it begins {first[:60]!r}); a feed answers a JSON array or JSONL"
        )


def fetch_decisions(
    *, inbox: Path | None = None, feed_url: str | None = None, timeout: float | None = None
) -> FetchReport:
    """Import from the inbox, then the feed (defaults from settings). Raises ``FetchError``
    for a feed that fails — after the inbox is done, so one bad source never blocks the other."""
    report = FetchReport()
    fetch_inbox(Path(inbox or settings.FETCH_INBOX_DIR), report)
    url = feed_url if feed_url is not None else settings.FETCH_FEED_URL
    if url:
        try:
            fetch_feed(url, report, timeout=timeout or settings.FETCH_FEED_TIMEOUT_SECONDS)
        except FetchError as exc:
            exc.report = report
            raise
    return report
