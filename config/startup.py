"""The front door of every command: ``manage.py`` hands its argv here.

It does three things Django's own ``execute_from_command_line`` does too late or not at all:

- honours ``--settings`` and ``--pythonpath`` *before* settings load (an operator layers a host's
  settings on top of the project's with them, or with ``DJANGO_SETTINGS_MODULE``);
- turns a bad environment (a malformed variable, a settings module that does not import) into
  one line on stderr and exit status 2;
- turns a deployment error found only once connected (a lock session that a transaction-pooling
  PgBouncer would share) into one line and exit status 2;
- turns a failure to *connect* to PostgreSQL into one line and exit status 2 — the database does
  not exist (with the ``createdb`` to run), the server refuses, the password is wrong — instead
  of a traceback. Errors after a connection was made are not touched: they are the command's.
"""

from __future__ import annotations

import os
import shlex
import sys

EXIT_ENVIRONMENT = 2


def _apply_default_options(argv: list[str]) -> None:
    """Apply ``--settings`` / ``--pythonpath`` from argv now, as Django would later."""
    from django.core.management.base import CommandParser, handle_default_options

    parser = CommandParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--settings")
    parser.add_argument("--pythonpath")
    parser.add_argument("args", nargs="*")
    try:
        options, _ = parser.parse_known_args(argv[2:])
    except Exception:  # noqa: BLE001 - a malformed command line is Django's to report
        return
    handle_default_options(options)


def connection_failure_line(exc: BaseException, settings_dict: dict) -> str | None:
    """One line for an error raised while *opening* a database connection, else None."""
    message = str(exc).strip()
    if message.startswith("connection timeout expired"):
        # A server that accepted the TCP connection and never answered (connect_timeout).
        message = (
            "connection failed: no answer within DRAINS_DB_CONNECT_TIMEOUT_SECONDS "
            f"({settings_dict.get('OPTIONS', {}).get('connect_timeout', '?')} s, connection timeout)"
        )
    if not message.startswith("connection failed:"):
        return None
    flat = " ".join(message.split())
    reason = flat.rsplit("FATAL:", 1)[-1] if "FATAL:" in flat else flat.removeprefix("connection failed:")
    reason = reason.strip().rstrip("?.")
    name = settings_dict.get("NAME") or "?"
    host = settings_dict.get("HOST") or "localhost"
    port = str(settings_dict.get("PORT") or "5432")
    where = f"PostgreSQL at {host}:{port}"
    if f'database "{name}" does not exist' in message:
        createdb = ["createdb", "-h", host, "-p", port]
        if settings_dict.get("USER"):
            createdb += ["-U", settings_dict["USER"]]
        createdb.append(name)
        return (
            f'Database error: the database "{name}" does not exist on {where}. Create it '
            f"with `{shlex.join(createdb)}` (as a user allowed to create databases), or point "
            "DATABASE_URL at an existing database; the first command then creates the tables."
        )
    return (
        f"Database error: cannot connect to {where} (database {name!r}): {reason}. Check that "
        "the server is running and that DATABASE_URL (host, port, user, password, name) is right."
    )


def run(argv: list[str]) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    _apply_default_options(argv)
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    try:
        # Load settings now: a bad environment is a user error. (LazySettings._setup is not in
        # django-stubs, and the plugin types ``settings`` as the loaded Settings.)
        settings._setup()  # type: ignore[misc]
    except ImproperlyConfigured as exc:
        sys.stderr.write(f"Configuration error: {exc}\n")
        sys.exit(EXIT_ENVIRONMENT)
    except ImportError as exc:
        module = os.environ.get("DJANGO_SETTINGS_MODULE")
        sys.stderr.write(
            f"Configuration error: the settings module {module!r} could not be imported ({exc}). "
            "Check --settings / DJANGO_SETTINGS_MODULE, and --pythonpath for where it lives.\n"
        )
        sys.exit(EXIT_ENVIRONMENT)

    import psycopg
    from django.core.management import execute_from_command_line
    from django.db import DEFAULT_DB_ALIAS, connections
    from django.db.utils import OperationalError

    try:
        execute_from_command_line(argv)
    except ImproperlyConfigured as exc:  # found only once connected, e.g. a transaction pooler
        sys.stderr.write(f"Configuration error: {exc}\n")
        sys.exit(EXIT_ENVIRONMENT)
    except (OperationalError, psycopg.OperationalError) as exc:
        line = connection_failure_line(exc, connections[DEFAULT_DB_ALIAS].settings_dict)
        if line is None:
            # Connected, then the database failed: still one line (no libpq DETAIL or HINT).
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            line = (
                f"Database error: {first}. Check that PostgreSQL is up and has disk space, "
                "then run the command again."
            )
        sys.stderr.write(line + "\n")
        sys.exit(EXIT_ENVIRONMENT)
