"""The one place that reads the process environment.

Every setting that an operator can change comes through here, with its default and a clear
error when the value is malformed. App modules never read ``os.environ`` themselves.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("DRAINS_VAR_DIR", BASE_DIR / "var"))

POSTGRES_SCHEMES = {"postgres", "postgresql", "pgsql", "postgis"}


def env_str(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return default if value is None or value == "" else value


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean; use 1/0, true/false, yes/no or on/off.")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a whole number.") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} is below the minimum of {minimum}.")
    return value


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number.") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} is below the minimum of {minimum}.")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
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
