"""Checking what an operator types, at the door: the one module every command's arguments go
through (types, ranges, lengths, calendars, URL schemes, paths).

A bad value is refused before the command touches the database or starts any work, with one
line that names the argument, says what was wrong and what is accepted, and exit status 2
(``BadInput``, a ``CommandError``; argparse's own errors are made to say the same in one line by
``CheckedCommand``). Each check is a plain function, usable as an argparse ``type=`` (it raises
``Refused``, both an ``argparse.ArgumentTypeError`` and a ``ValueError``) and, through
``check``, from a command's ``handle``. A check accepts what it returns, so that a value passed
as a keyword (``call_command(name, count=3)``) goes through the same check again.

This module reads no settings at import time and never writes anything.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.dateparse import parse_datetime

EXIT_REFUSED = 2
"""Exit status of a refused input (argparse's own); 1 is kept for work that failed."""

SHOWN = 60
"""How much of a bad value a refusal repeats (a 10,000-character value stays one short line)."""

# The largest UTC offset PostgreSQL stores (it refuses a displacement of 16 hours or more).
MAX_UTC_OFFSET = timedelta(hours=15, minutes=59)

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # Unicode's category Cc, exactly
_WHOLE = re.compile(r"[+-]?[0-9]+", re.ASCII)
_DECIMAL = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?", re.ASCII)


class Refused(argparse.ArgumentTypeError, ValueError):
    """What every check raises: argparse shows its message as it is; others catch ValueError."""


class BadInput(CommandError):
    """A refused argument or setting: one line, exit status 2, nothing written."""

    def __init__(self, message: str):
        super().__init__(message, returncode=EXIT_REFUSED)


def shown(value: Any) -> str:
    """``value`` as a refusal repeats it: repr (so NUL, a surrogate, blanks are visible), short."""
    text = repr(value)
    if len(text) <= SHOWN:
        return text
    size = len(value) if isinstance(value, str) else len(text)
    return f"{text[: SHOWN - 12]}…' ({size} characters)"


def check(argument: str, value: Any, kind: Callable[[Any], Any]) -> Any:
    """Run ``kind`` (one of the checks below) on a value a command got some other way (a
    setting, a default); raise ``BadInput`` naming ``argument``."""
    try:
        return kind(value)
    except (argparse.ArgumentTypeError, ValueError) as exc:
        raise BadInput(f"{argument}: {exc}") from None


# --- numbers ----------------------------------------------------------------------------------


def whole_number(minimum: int, maximum: int) -> Callable[[str], int]:
    """A whole number written in ASCII digits, ``minimum`` to ``maximum`` inclusive."""
    accepted = f"a whole number from {minimum} to {maximum}"

    def parse(value: object) -> int:  # text from a command line, or a call_command keyword
        raw = value
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise Refused(f"{shown(value)} is not {accepted}")
        if isinstance(value, str):
            if not _WHOLE.fullmatch(value.strip()):
                raise Refused(f"{shown(value)} is not {accepted}")
            number = int(value.strip())
        else:
            number = value
        if number < minimum:
            raise Refused(f"{shown(raw)} must be at least {minimum}; give {accepted}")
        if number > maximum:
            raise Refused(f"{shown(raw)} must be at most {maximum}; give {accepted}")
        return number

    parse.__name__ = "whole number"
    return parse


def decimal_number(minimum: float, maximum: float, unit: str = "") -> Callable[[str], float]:
    """A finite number (ASCII digits, a point, an exponent), ``minimum`` to ``maximum``."""
    accepted = f"a number from {minimum:g} to {maximum:g}" + (f" {unit}" if unit else "")

    def parse(value: object) -> float:  # text from a command line, or a call_command keyword
        raw = value
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise Refused(f"{shown(value)} is not {accepted}")
        if isinstance(value, str):
            if not _DECIMAL.fullmatch(value.strip()):
                raise Refused(f"{shown(value)} is not {accepted}")
            value = float(value.strip())
        number = float(value)
        if number != number or number in (float("inf"), float("-inf")):
            raise Refused(f"{shown(raw)} is not a finite number; give {accepted}")
        if number < minimum:
            raise Refused(f"{shown(raw)} must be at least {minimum:g}; give {accepted}")
        if number > maximum:
            raise Refused(f"{shown(raw)} must be at most {maximum:g}; give {accepted}")
        return number

    parse.__name__ = "number"
    return parse


# --- text -------------------------------------------------------------------------------------


def text(max_length: int, *, blank: bool = False, what: str = "text") -> Callable[[str], str]:
    """A line of text of at most ``max_length`` characters (the column's length): valid Unicode
    (no lone surrogate), no NUL or other control character; blank only when ``blank``.
    Returned stripped of surrounding spaces."""
    accepted = f"{what} of 1 to {max_length} characters" if not blank else (
        f"{what} of at most {max_length} characters"
    )

    def parse(value: str) -> str:
        if not isinstance(value, str):
            raise Refused(f"{shown(value)} is not {accepted}")
        problem = text_problem(value)
        if problem:
            raise Refused(f"{shown(value)} {problem}; give {accepted}")
        stripped = value.strip()
        if not stripped and not blank:
            raise Refused(f"{shown(value)} is blank; give {accepted}")
        if len(stripped) > max_length:
            raise Refused(f"{shown(value)} is too long; give {accepted}")
        return stripped

    parse.__name__ = what
    return parse


def text_problem(value: str) -> str:
    """What makes ``value`` unfit to store or print ("" when nothing): a lone surrogate (not
    Unicode; what undecodable bytes of a command line become), NUL (PostgreSQL cannot store
    it), another control character (a line break in a name would forge a log line)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"is not valid Unicode (character {exc.start + 1} is a lone surrogate)"
    if "\x00" in value:
        return "contains a NUL character"
    control = _CONTROL.search(value)
    if control:
        return f"contains the control character {control[0]!r} at {control.start() + 1}"
    return ""


def choice(choices: Callable[[], list[str]], what: str) -> Callable[[str], str]:
    """One of ``choices()`` (read when the argument is parsed, e.g. the registered drains)."""

    def parse(value: str) -> str:
        known = choices()
        if value not in known:
            raise Refused(
                f"There is no {what} named {shown(value)}; known {what}s: "
                f"{', '.join(known) or 'none'}."
            )
        return value

    parse.__name__ = what
    return parse


# --- calendars --------------------------------------------------------------------------------


def aware_datetime(value: Any) -> datetime:
    """An ISO 8601 date and time with a UTC offset of at most ±15:59, inside the calendar in
    UTC and in every zone (so nothing overflows when it is shown or stored)."""
    example = "e.g. 2026-12-05T18:00:00+02:00"
    parsed: datetime | None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        problem = text_problem(value)
        if problem:
            raise Refused(f"{shown(value)} {problem}; give an ISO 8601 time, {example}")
        if not value.isascii():
            raise Refused(
                f"{shown(value)} has characters other than ASCII; write the date and time with "
                f"the digits 0-9, {example}"
            )
        if not value.strip():
            raise Refused(f"{shown(value)} is blank; give an ISO 8601 time, {example}")
        try:
            parsed = parse_datetime(value.strip())
        except ValueError:
            parsed = None
        if parsed is None:
            raise Refused(
                f"{shown(value)} is not a date and time; give ISO 8601 with a UTC offset, {example}"
            )
    else:
        raise Refused(f"{shown(value)} is not a date and time; give ISO 8601, {example}")
    offset = parsed.utcoffset()
    if parsed.tzinfo is None or offset is None:
        raise Refused(
            f"{parsed.isoformat()} has no time zone; add a UTC offset (+02:00 for Israel in "
            "winter, +03:00 in summer)"
        )
    if abs(offset) > MAX_UTC_OFFSET:
        sign = "-" if offset < timedelta(0) else "+"
        minutes = int(abs(offset).total_seconds() // 60)
        raise Refused(
            f"{parsed.isoformat()} has the UTC offset {sign}{minutes // 60:02d}:"
            f"{minutes % 60:02d}, beyond the ±15:59 a time zone can have"
        )
    if not in_calendar(parsed):
        raise Refused(
            f"{parsed.isoformat()} is at the edge of the calendar (it leaves years 1-9999 in "
            "UTC or a nearby zone); give a time between years 2 and 9998"
        )
    return parsed


def in_calendar(moment: datetime) -> bool:
    """Whether ``moment`` stays within years 1-9999 in UTC and a day either side (any zone)."""
    try:
        utc = moment.astimezone(UTC)
        utc - timedelta(days=1)
        utc + timedelta(days=1)
    except OverflowError:
        return False
    return True


# --- URLs and paths ---------------------------------------------------------------------------


def http_url(value: str) -> str:
    """An http:// or https:// URL with a host (the feed: never file://, ftp:// or a bare word)."""
    if not isinstance(value, str) or text_problem(value) or not value.strip():
        raise Refused(f"{shown(value)} is not a URL; give an http:// or https:// URL")
    parts = urlsplit(value.strip())
    if parts.scheme.lower() not in ("http", "https"):
        got = f"the scheme {parts.scheme!r}" if parts.scheme else "no scheme"
        raise Refused(f"{shown(value)} has {got}; give an http:// or https:// URL")
    try:
        parts.port  # noqa: B018 - a port that is not a number raises here
    except ValueError:
        raise Refused(f"{shown(value)} has a bad port; give an http(s) URL") from None
    if not parts.hostname:
        raise Refused(f"{shown(value)} names no host; give e.g. https://courts.example/feed")
    return value.strip()


def existing_path(kind: str = "any") -> Callable[[str], Path]:
    """A path that exists, is readable and is a file (``kind="file"``), a folder (``"dir"``) or
    either (``"any"``)."""
    accepted = {"file": "an existing readable file", "dir": "an existing readable folder",
                "any": "an existing readable file or folder"}[kind]

    def parse(value: str) -> Path:
        if not isinstance(value, str | Path):
            raise Refused(f"{shown(value)} is not a path; give {accepted}")
        raw = str(value)
        problem = _path_problem(raw)
        if problem:
            raise Refused(f"{shown(raw)} {problem}; give {accepted}")
        path = Path(raw)
        try:
            is_dir, is_file = path.is_dir(), path.is_file()
        except OSError as exc:  # a name too long, a loop of links
            raise Refused(
                f"{shown(raw)} cannot be read ({exc.strerror}); give {accepted}"
            ) from None
        if not is_dir and not is_file:
            what = "is not a regular file or folder" if os.path.lexists(raw) else "does not exist"
            raise Refused(f"{shown(raw)} {what}; give {accepted}")
        if kind == "file" and not is_file:
            raise Refused(f"{shown(raw)} is a folder; give {accepted}")
        if kind == "dir" and not is_dir:
            raise Refused(f"{shown(raw)} is not a folder; give {accepted}")
        if not os.access(path, os.R_OK | (os.X_OK if is_dir else 0)):
            raise Refused(f"{shown(raw)} is not readable; give {accepted}")
        return path

    parse.__name__ = "path"
    return parse


def writable_folder(value: str | Path) -> Path:
    """A folder this process can read, write and enter, or one it can create (its nearest
    existing parent is such a folder): the inbox, which the fetch creates and moves files in."""
    raw = str(value)
    accepted = "a folder this user can write, or one it can create"
    problem = _path_problem(raw)
    if problem:
        raise Refused(f"{shown(raw)} {problem}; give {accepted}")
    path = Path(raw).absolute()
    probe = path
    try:
        while not probe.exists():
            probe = probe.parent
        is_dir = probe.is_dir()
    except OSError as exc:
        raise Refused(f"{shown(raw)} cannot be read ({exc.strerror}); give {accepted}") from None
    if not is_dir:
        what = "is a file" if probe == path else f"lies under the file {probe}"
        raise Refused(f"{shown(raw)} {what}; give {accepted}")
    if not os.access(probe, os.R_OK | os.W_OK | os.X_OK):
        raise Refused(f"{shown(raw)}: {probe} is not writable by this user; give {accepted}")
    return path


def _path_problem(raw: str) -> str:
    if not raw.strip():
        return "is blank (an empty path would mean the current folder)"
    if "\x00" in raw:
        return "contains a NUL character"
    try:
        os.fsencode(raw)
    except UnicodeEncodeError:
        return "is not valid Unicode"
    return ""


# --- the command base -------------------------------------------------------------------------


class OneLineParser(CommandParser):
    """Django's parser, refusing in one line with exit status 2: from a shell, the usage is
    left out (``--help`` has it); in process (``call_command``), ``BadInput``."""

    def error(self, message):
        command = f"manage.py {self.prog.split()[-1]}"
        # argparse quotes what it did not recognise as it came: a line break or another control
        # character in it would break the one line, so those are written escaped (\n, \x00).
        message = _CONTROL.sub(lambda m: repr(m.group())[1:-1], message)
        line = f"{message} (see {command} --help)"
        if self.called_from_command_line:
            sys.stderr.write(f"{command}: error: {line}\n")
            sys.exit(EXIT_REFUSED)
        raise BadInput(line)


class CheckedCommand(BaseCommand):
    """The base of the project's commands: argument errors are one line and exit status 2, and
    options given as keywords (``call_command(name, count=0)``, cron's jobs) pass the same
    checks as the command line, which argparse alone would let through unchecked."""

    def create_parser(self, prog_name, subcommand, **kwargs):
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.__class__ = OneLineParser  # a subclass adding only error(): no state to move
        self._checked_parser = parser
        return parser

    def execute(self, *args, **options):
        parser = getattr(self, "_checked_parser", None)
        if parser is not None:
            for action in parser._actions:
                if action.dest in options and options[action.dest] is not None:
                    options[action.dest] = _recheck(action, options[action.dest])
        return super().execute(*args, **options)


def _recheck(action: argparse.Action, value: Any) -> Any:
    """Run an option's type and choices again on a value (the checks accept what they return)."""
    if action.type is None and not action.choices:
        return value
    name = "/".join(action.option_strings) or action.dest
    many = action.nargs in ("+", "*") or isinstance(action.nargs, int)
    if many and not isinstance(value, list | tuple):
        raise BadInput(f"argument {name}: {shown(value)} is not a list of values")
    checked = []
    for item in value if many else [value]:
        if action.type is not None:
            try:
                # The project names no type by its registry string; one would fail here as
                # before (TypeError: refused), so the callable it always is here is said.
                item = cast(Callable[[Any], Any], action.type)(item)
            except (argparse.ArgumentTypeError, ValueError, TypeError) as exc:
                raise BadInput(f"argument {name}: {exc}") from None
        if action.choices and item not in action.choices:
            raise BadInput(
                f"argument {name}: invalid choice: {shown(item)} (choose from "
                f"{', '.join(map(repr, action.choices))})"
            )
        checked.append(item)
    return checked if many else checked[0]
