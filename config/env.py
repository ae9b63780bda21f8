"""The one place that reads the process environment.

Every setting that an operator can change comes through here, with its default and a clear
error when the value is malformed. App modules never read ``os.environ`` themselves.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import overload
from urllib.parse import parse_qs, unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("DRAINS_VAR_DIR", BASE_DIR / "var"))

READ: set[str] = {"DRAINS_VAR_DIR"}
"""The variables this process's settings asked for (config/checks.py names those set but unread)."""

POSTGRES_SCHEMES = {"postgres", "postgresql", "pgsql", "postgis"}


PLACEHOLDER = "CHANGE-ME"
"""What deploy/drains.env.example puts where a secret goes: a value still holding it was copied
and not filled in, and is refused rather than run with."""


def _raw(name: str) -> str | None:
    READ.add(name)
    value = os.environ.get(name)
    if value is None:
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # bytes that are not UTF-8 arrive as lone surrogates
        raise ImproperlyConfigured(f"{name} is not valid UTF-8 text; write it in UTF-8.") from None
    return value


@overload
def env_str(name: str, default: str) -> str: ...
@overload
def env_str(name: str, default: None = None) -> str | None: ...
def env_str(name: str, default: str | None = None) -> str | None:
    value = _raw(name)
    return default if value is None or value == "" else value


def refuse_placeholder(name: str, value: str | None) -> None:
    if value and PLACEHOLDER in value:
        raise ImproperlyConfigured(
            f"{name} still holds the example's placeholder {PLACEHOLDER}; fill it in "
            "(docs/deploy.md, 'The production environment')."
        )


def env_choice(name: str, default: str, choices: list[str]) -> str:
    value = env_str(name, default)
    if value not in choices:
        raise ImproperlyConfigured(f"{name}={value!r} is not one of {', '.join(choices)}.")
    return value


@overload
def env_zone(name: str, default: str) -> str: ...
@overload
def env_zone(name: str, default: None) -> str | None: ...
def env_zone(name: str, default: str | None) -> str | None:
    """An IANA time zone name (Asia/Jerusalem, UTC), checked against the zone database."""
    value = env_str(name, default)
    if value is None:
        return None
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long for a file
        raise ImproperlyConfigured(
            f"{name}={value!r} is not a time zone; use an IANA name such as Asia/Jerusalem or UTC."
        ) from None
    return value


def _zone_name(text: str) -> str | None:
    """``text`` as an IANA zone name (``Asia/Jerusalem``, ``:UTC``, a path into a zoneinfo
    folder), or None when it is not one."""
    name = text.strip().lstrip(":")
    if "zoneinfo/" in name:
        name = name.rsplit("zoneinfo/", 1)[1]
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None
    return name


def host_zone() -> str:
    """The zone this host's programs, cron among them, read local times in, found as glibc finds
    it: ``TZ`` when set (a zone name, or ``:/path`` to a zone file; glibc reads a ``TZ`` it cannot
    parse as UTC), else ``/etc/localtime`` (a link into the zone database, or a copy of one of its
    files), else Debian's ``/etc/timezone``, else UTC."""
    tz = os.environ.get("TZ")
    if tz is not None:
        path = tz.strip().lstrip(":")
        if path.startswith("/"):
            return _zone_of_file(Path(path)) or "UTC"
        return _zone_name(tz) or "UTC"
    return _zone_of_file(Path("/etc/localtime")) or _etc_timezone() or "UTC"


_ZONEINFO = Path("/usr/share/zoneinfo")


def _etc_timezone() -> str | None:
    try:
        return _zone_name(Path("/etc/timezone").read_text())
    except OSError:
        return None


def _zone_of_file(path: Path) -> str | None:
    """The zone a zone file is: where its links lead in the zone database, or, for a copy, the
    database file with the same bytes (/etc/timezone's zone first)."""
    try:
        resolved = os.path.realpath(path)
        data = Path(resolved).read_bytes()
    except OSError:
        return None
    named = _zone_name(resolved)
    if named:
        return named
    # A copy: /etc/timezone's zone first (one read), the database walked only when it differs.
    for name in itertools.chain([_etc_timezone()], _database_zones()):
        with contextlib.suppress(OSError, ValueError):
            if name and (_ZONEINFO / name).read_bytes() == data and _zone_name(name):
                return name
    return None


def _database_zones() -> Iterator[str]:
    with contextlib.suppress(OSError):
        for path in sorted(_ZONEINFO.rglob("*")):
            relative = path.relative_to(_ZONEINFO)
            if path.is_file() and not path.is_symlink() and relative.parts[0] not in ("posix", "right"):
                yield str(relative)


def env_cron_zone(name: str) -> str:
    """The zone cron reads the schedule in: ``name`` when an operator declares it, else the
    host's own (``host_zone``). Django replaces ``TZ`` with ``TIME_ZONE`` once the settings have
    loaded, so the zone found here is written back under ``name`` for every child process (the
    web server, a job the scheduler starts): they all read the schedule as cron does."""
    zone = env_zone(name, None) or host_zone()
    os.environ[name] = zone
    return zone


def env_http_url(name: str) -> str | None:
    """An optional http:// or https:// URL with a host (never file://, ftp:// or a bare word)."""
    value = env_str(name)
    if value is None:
        return None
    parts = urlsplit(value.strip())
    try:
        parts.port  # noqa: B018 - a port that is not a number raises here
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} has a bad port; give an http(s) URL.") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ImproperlyConfigured(
            f"{name}={value!r} is not an http:// or https:// URL with a host, e.g. "
            "https://courts.example/feed."
        )
    return value.strip()


def env_emails(name: str, default: list[str]) -> list[str]:
    from django.core.exceptions import ValidationError
    from django.core.validators import validate_email

    values = env_list(name, default)
    for value in values:
        address = value.rsplit("<", 1)[-1].rstrip(">").strip()  # "Ops <ops@example.org>"
        try:
            validate_email(address)
        except ValidationError:
            raise ImproperlyConfigured(f"{name}: {value!r} is not an email address.") from None
    return values


def env_bool(name: str, default: bool) -> bool:
    raw = _raw(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean; use 1/0, true/false, yes/no or on/off.")


def env_int(
    name: str, default: int, *, minimum: int | None = None, maximum: int = 2**31 - 1
) -> int:
    """A whole number; at most ``maximum`` (by default what an integer column holds)."""
    raw = _raw(name)
    if raw is None or raw == "":
        return default
    if not re.fullmatch(r"\s*[+-]?[0-9]+\s*", raw, re.ASCII):
        raise ImproperlyConfigured(f"{name}={raw!r} is not a whole number.")
    value = int(raw)
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} is below the minimum of {minimum}.")
    if value > maximum:
        raise ImproperlyConfigured(f"{name}={value} is above the maximum of {maximum}.")
    return value


def env_float(
    name: str, default: float, *, minimum: float | None = None, maximum: float = 1e9
) -> float:
    """A finite number (never nan or inf), from ``minimum`` to ``maximum``."""
    raw = _raw(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw) if raw.strip().isascii() else math.nan
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number.") from None
    if not math.isfinite(value):
        raise ImproperlyConfigured(f"{name}={raw!r} is not a finite number.")
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value:g} is below the minimum of {minimum:g}.")
    if value > maximum:
        raise ImproperlyConfigured(f"{name}={value:g} is above the maximum of {maximum:g}.")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = _raw(name)
    if raw is None or raw.strip() == "":
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def settings_module_if_not(default: str) -> str | None:
    """The settings module this process runs with, when it is not ``default``."""
    module = os.environ.get("DJANGO_SETTINGS_MODULE")
    return module if module and module != default else None


class NotPostgres(ImproperlyConfigured):
    """DATABASE_URL names a database other than PostgreSQL."""


def parse_database_url(url: str) -> dict:
    """Turn ``postgres://user:pass@host:port/name?opt=...`` into a Django DATABASES entry.

    Anything but PostgreSQL is refused: the schema gate and the single-runner guarantee are
    PostgreSQL advisory locks, which no other database has.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in POSTGRES_SCHEMES:
        shown = scheme or "(no scheme)"
        raise NotPostgres(
            f"DATABASE_URL uses {shown!r}, but this system runs on PostgreSQL only: the schema "
            "gate and the one-runner-per-drain guarantee are PostgreSQL advisory locks, which "
            f"{shown} does not have. Set DATABASE_URL=postgres://USER:PASSWORD@HOST:5432/NAME, "
            "or unset it to use the embedded PostgreSQL in var/pgdata."
        )
    name = unquote(parts.path.lstrip("/"))
    options: dict[str, str] = {}
    host = unquote(parts.hostname or "") if parts.hostname else ""
    for key, values in parse_qs(parts.query).items():
        if key == "host":
            host = values[-1]  # a socket directory, e.g. ?host=/var/run/postgresql
        else:
            options[key] = values[-1]
    if not name:
        raise ImproperlyConfigured(f"DATABASE_URL {url!r} names no database; add /NAME at the end.")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": host,
        "PORT": str(parts.port or ""),
        "OPTIONS": options,
    }


def dead_peer_options(bound_seconds: int, options: dict) -> dict:
    """libpq parameters so that a peer that vanished without a FIN or RST (powered off,
    partitioned) is noticed within about ``bound_seconds``, on both ends of every connection.

    Client side (libpq): TCP keepalives and ``tcp_user_timeout``, so this process notices a
    vanished server. Server side (``options=-c …``, the session's own settings): the same, so
    the server ends the session of a vanished *client* and frees its advisory locks (a drain's
    lock, the schema lock) instead of holding them for the kernel's default of over two hours.
    Idle for a third of the bound, then four probes spread over the rest. Unix-socket
    connections ignore all of it. Values already in ``options`` (DATABASE_URL's query) win.
    0 turns it off.
    """
    if bound_seconds <= 0:
        return options
    idle = max(1, bound_seconds // 3)
    count = 4
    interval = max(1, (bound_seconds - idle) // count)
    timeout_ms = bound_seconds * 1000
    merged = {
        "keepalives": "1",
        "keepalives_idle": str(idle),
        "keepalives_interval": str(interval),
        "keepalives_count": str(count),
        "tcp_user_timeout": str(timeout_ms),
        **options,
    }
    # client_connection_check_interval: a backend busy in a long statement (waiting for a lock,
    # say) also checks now and then that its client is still there.
    server = (
        f"-c tcp_keepalives_idle={idle} -c tcp_keepalives_interval={interval} "
        f"-c tcp_keepalives_count={count} -c tcp_user_timeout={timeout_ms} "
        f"-c client_connection_check_interval={interval * 1000}"
    )
    merged["options"] = f"{server} {options['options']}" if options.get("options") else server
    return merged
