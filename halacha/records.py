"""What a court-decision record is: its fields, the help text that documents them, and the
validation every imported line goes through (``parse_line`` / ``validate_record``). Pure: no
database, no files; halacha/importer.py writes what passes."""

from __future__ import annotations

import json
import re
from datetime import date, timedelta

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.utils import timezone

from drains.validate import text_problem
from halacha.models import Language

MAX_RECORD_BYTES = 4 * 1024 * 1024
"""A line longer than this is refused unread (a runaway line is a broken file, not a decision)."""

RECORD_FIELDS = (
    "external_id",
    "court",
    "case_number",
    "decided_on",
    "title",
    "text",
    "language",
    "url",
)

RECORD_HELP = """\
Record format (one JSON object per line; UTF-8; blank lines are ignored):

  {"external_id": "sc-2024-0012",        required, unique key, at most 200 characters
   "text": "Full text of the decision", required, not blank
   "court": "Supreme Court",             optional, at most 200 characters
   "case_number": "CA 1234/23",          optional, at most 200 characters
   "decided_on": "2024-03-01",           optional, YYYY-MM-DD or null, from 1800-01-01 to tomorrow
   "title": "Levi v. Cohen",             optional, at most 500 characters
   "language": "en",                     optional, "he" or "en" (guessed from the text if absent)
   "url": "https://example.org/..."}     optional, an http(s) URL

Strings must be valid Unicode (no lone surrogate such as "\\ud800") without NUL; the short
fields (external_id, court, case_number, title, language, url) hold no control characters.
An external_id that came earlier in the same file or feed is reported as a duplicate and
skipped: the first is kept. Other keys are refused (a misspelt key would otherwise be lost
silently). A key left out keeps
what the database already has; a key given replaces it. Importing the same record again changes
nothing; a record whose text changed goes back to "pending" and loses its old halachot.
A line longer than 4 MiB is refused without being read into memory.
"""

_MAX_LENGTHS = {"external_id": 200, "court": 200, "case_number": 200, "title": 500, "url": 1000}
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_HEBREW_RE = re.compile(r"[\u0590-\u05FF]")
_LATIN_RE = re.compile(r"[A-Za-z]")
_url_validator = URLValidator(schemes=["http", "https"])


EARLIEST_DECISION = date(1800, 1, 1)
"""The earliest ``decided_on`` accepted: older is a typo (0024 for 2024), not a decision the
courts publish. The latest is tomorrow (the operator's date plus one day, for time zones): a
decision is never dated in the future."""


def latest_decision() -> date:
    return timezone.localdate() + timedelta(days=1)


class RecordError(ValueError):
    """A record that cannot be imported; the message says what to fix."""

    failure_kind = "input"  # drains/failures.py


class NotJsonLine(RecordError):
    """A line that is not JSON at all (not merely a bad record): a payload made only of these
    is not JSON, and fails as a whole."""


# --- validation -------------------------------------------------------------------------------


def _string(obj: dict, key: str, *, required: bool = False) -> str | None:
    if key not in obj or obj[key] is None:
        if required:
            raise RecordError(f'"{key}" is missing; every record needs it')
        return None
    value = obj[key]
    if not isinstance(value, str):
        raise RecordError(f'"{key}" must be a string, not {type(value).__name__}')
    # A decision's text has line breaks and tabs; the short fields are one line each.
    problem = text_problem(value) if key != "text" else _text_problem(value)
    if problem:
        raise RecordError(f'"{key}" {problem}')
    limit = _MAX_LENGTHS.get(key)
    if limit is not None and len(value) > limit:
        raise RecordError(f'"{key}" is {len(value)} characters long; the limit is {limit}')
    return value


def _required_string(obj: dict, key: str) -> str:
    value = _string(obj, key, required=True)
    assert value is not None  # a required field that is missing raised RecordError
    return value


def _text_problem(value: str) -> str:
    """What a decision's text may not hold: a lone surrogate (not Unicode) or NUL."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"is not valid Unicode (character {exc.start + 1} is a lone surrogate)"
    return "contains a NUL character" if "\x00" in value else ""


def guess_language(text: str) -> str:
    """He when Hebrew letters outnumber Latin ones, else en."""
    hebrew = len(_HEBREW_RE.findall(text))
    latin = len(_LATIN_RE.findall(text))
    return Language.HEBREW if hebrew > latin else Language.ENGLISH


def _decided_on(raw) -> date | None:
    """A record's ``decided_on``: None for null or "", else a real date within the range a
    court decision can have. Raises ``RecordError``."""
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str) or not _DATE_RE.match(raw):
        raise RecordError(f'"decided_on" {raw!r} is not a date in the form YYYY-MM-DD')
    try:
        decided = date.fromisoformat(raw)
    except ValueError:
        raise RecordError(f'"decided_on" {raw!r} is not a real date') from None
    latest = latest_decision()
    if not EARLIEST_DECISION <= decided <= latest:
        raise RecordError(
            f'"decided_on" {raw} is outside {EARLIEST_DECISION} to {latest}: a court '
            "decision is not older than that, nor in the future"
        )
    return decided


def _url(obj: dict) -> str:
    """A record's ``url``: "" or an http(s) URL. Raises ``RecordError``."""
    url = (_string(obj, "url") or "").strip()
    if url:
        try:
            _url_validator(url)
        except ValidationError:
            raise RecordError(f'"url" {url!r} is not an http(s) URL') from None
    return url


def validate_record(obj) -> dict:
    """Check one decoded record and return the clean fields to store.

    The result holds ``external_id`` and ``text`` and only those optional fields the record
    gave (so that leaving a key out keeps the stored value). Raises ``RecordError``.
    """
    if not isinstance(obj, dict):
        raise RecordError(f"a record must be a JSON object, not {type(obj).__name__}")
    unknown = sorted(set(obj) - set(RECORD_FIELDS))
    if unknown:
        raise RecordError(
            f"unknown field(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(RECORD_FIELDS)}"
        )
    external_id = _required_string(obj, "external_id").strip()
    if not external_id:
        raise RecordError('"external_id" is blank')
    text = _required_string(obj, "text")
    if not text.strip():
        raise RecordError('"text" is blank')
    clean: dict = {"external_id": external_id, "text": text}

    for key in ("court", "case_number", "title"):
        if key in obj:
            clean[key] = (_string(obj, key) or "").strip()

    if "decided_on" in obj:
        clean["decided_on"] = _decided_on(obj["decided_on"])

    if obj.get("language") is not None:
        language = _string(obj, "language")
        if language not in Language.values:
            raise RecordError(f'"language" {language!r} must be "he" or "en"')
        clean["language"] = language

    if "url" in obj:
        clean["url"] = _url(obj)
    return clean


def _decode_error(exc: json.JSONDecodeError) -> str:
    return f"not valid JSON: {exc.msg} at column {exc.colno}"


def parse_line(line: str) -> dict:
    """Decode and validate one JSONL line; raises ``RecordError``."""
    line = line.rstrip("\r\n")
    if len(line) > MAX_RECORD_BYTES // 4 and len(line.encode("utf-8")) > MAX_RECORD_BYTES:
        raise RecordError(too_long(len(line.encode("utf-8"))))
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise NotJsonLine(_decode_error(exc)) from None
    except ValueError as exc:  # an integer of more than 4300 digits
        raise RecordError(f"a number in the record is too long: {exc}") from None
    except RecursionError:
        raise RecordError("the record nests too deeply to be a decision") from None
    return validate_record(obj)


def too_long(size: int) -> str:
    return (
        f"the line is {size / 1024 / 1024:.1f} MiB; the limit is "
        f"{MAX_RECORD_BYTES // 1024 // 1024} MiB per record"
    )
