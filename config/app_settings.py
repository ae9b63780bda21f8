"""The project's own settings: the drains, halacha extraction, the schedule, the court fetch
and email. What differs between deployments is read from the environment through config/env.py
(the README's table); the runtime's constants are written here with their reasons
(config/settings.py holds Django's and its libraries', and star-imports these). Loaded on its
own, it needs nothing from config/settings.py.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from config.env import (
    VAR_DIR,
    env_cron_zone,
    env_emails,
    env_float,
    env_http_url,
    env_int,
    env_str,
    env_zone,
    settings_module_if_not,
)


def env_text(name: str, default: str) -> str:
    """``env_str`` with a default, typed as what it is: never None."""
    return env_str(name, default) or default


# --- Drains -----------------------------------------------------------------------------------
DRAINS_VAR_DIR = VAR_DIR
DRAINS_LOG_DIR = VAR_DIR / "log"
# The local journal of paid results (drains/journal.py): one SQLite file per host in this folder.
# Put it on a disk of the host's own that survives a restart (docs/operations.md, "The journal").
DRAINS_JOURNAL_DIR = Path(env_text("DRAINS_JOURNAL_DIR", str(VAR_DIR / "journal")))
# The zone in which operators think and in which human reset times without a zone are read.
DRAINS_OPERATOR_TZ = env_zone("DRAINS_OPERATOR_TZ", "Asia/Jerusalem")
# The quota's ceiling (docs/quota.md): no drain starts a call once a window's latest utilization
# is at 1 minus its reserve: what the account's owner keeps for themselves. A quota key's
# QuotaPolicy row overrides these (manage.py quota set).
DRAINS_QUOTA_WEEKLY_RESERVE = env_float("DRAINS_QUOTA_WEEKLY_RESERVE", 0.10, minimum=0, maximum=0.9)
DRAINS_QUOTA_SESSION_RESERVE = env_float("DRAINS_QUOTA_SESSION_RESERVE", 0.0, minimum=0, maximum=0.9)

# --- The runtime's constants ---------------------------------------------------------------------
# Not read from the environment: no deployment needs another value. A host's own settings module
# (`from config.settings import *`, docs/deploy.md) may still change one; tests do so too.
#
# Schema gate (drains/schema/): a migrator waits this long for the schema lock, then exits 1
# naming the holder, reporting the holder every REPORT seconds while it waits; migration DDL never
# queues behind a long transaction for more than LOCK_TIMEOUT_MS, and a DDL that hit it is retried
# DDL_RETRIES times, the backoff doubling from DDL_BACKOFF_SECONDS (capped at 30 s).
DRAINS_MIGRATE_LOCK_WAIT_SECONDS = 600.0
DRAINS_MIGRATE_LOCK_REPORT_SECONDS = 10.0
DRAINS_MIGRATE_LOCK_TIMEOUT_MS = 5000
DRAINS_MIGRATE_DDL_RETRIES = 5
DRAINS_MIGRATE_DDL_BACKOFF_SECONDS = 1.0
# TEST-ONLY: runs the gate without its lock so a test can show the race it prevents.
DRAINS_SCHEMA_GATE_UNSAFE_NO_LOCK = False
# A cron run stops after this many items and starts none after this many minutes, so that it ends
# well before the next cron line; a burst has no item cap.
DRAINS_DEFAULT_MAX_ITEMS = 50
DRAINS_DEFAULT_MAX_MINUTES = 12.0
# Items per committed checkpoint: the liveness signal the supervisor reads.
DRAINS_CHUNK_SIZE = 10
# An item whose call failed this many times is failed and no longer retried (a drain class may
# set its own max_attempts).
DRAINS_MAX_ATTEMPTS = 3
# The backoff after a rate limit that names no usable reset: one supervisor interval.
DRAINS_FALLBACK_BACKOFF_SECONDS = 900
# A drain whose quota another drain is probing after a reset holds this long at most before it
# exits without a call (the next cron run or supervisor start looks again).
DRAINS_PROBE_WAIT_SECONDS = 600.0
# The plan by limit kind (docs/rate-limits.md). A per-minute API limit slows the run down: half
# the calls in flight and a wait for the parsed reset (at most MAX_WAIT); one more call in flight
# after every RECOVER_CALLS calls that went through; REPEATS limits in a row with no call through
# stop the run with a backoff of at least BACKOFF_SECONDS.
DRAINS_SLOW_DOWN_MAX_WAIT_SECONDS = 60.0
DRAINS_SLOW_DOWN_RECOVER_CALLS = 5
DRAINS_SLOW_DOWN_REPEATS = 5
DRAINS_SLOW_DOWN_BACKOFF_SECONDS = 300
# HTTP 529 (overloaded) is no limit: the call is retried inside the run RETRIES times, waiting
# RETRY_SECONDS, then twice that, ... (with jitter); still overloaded, the run stops with a
# short backoff, and the item is not counted as failed.
DRAINS_OVERLOAD_RETRIES = 3
DRAINS_OVERLOAD_RETRY_SECONDS = 2.0
DRAINS_OVERLOAD_BACKOFF_SECONDS = 300
# The weekly reserve is released linearly to 0 over this many hours before the weekly reset, so
# that what would lapse is spent (0 = never); the session reserve never is.
DRAINS_QUOTA_RESERVE_RELEASE_HOURS = 6.0
# Quota samples (the spend rate's history) older than this many days are pruned by the supervisor.
DRAINS_QUOTA_SAMPLE_DAYS = 28
# The projection's rate (operations/projection.py): items done over the last this-many minutes
# of counted time (working time in a burst; wall time without backoffs otherwise).
DRAINS_PROJECTION_WINDOW_MINUTES = 180.0
# A quota window's reading shown as stale once this old: the owner may have spent from the same
# windows since no call of ours looked. A window past its reset is stale too.
DRAINS_QUOTA_STALE_MINUTES = 60.0
# No checkpoint for this long means a run is hung: its chunk of 10 items takes minutes at most.
DRAINS_HUNG_AFTER_SECONDS = 1800
# The runner's and the supervisor's own statements (SET on their sessions, so it works through
# PgBouncer in session mode; migrations and the web keep the server's settings). 0 = no limit.
DRAINS_DB_STATEMENT_TIMEOUT_MS = 30000
DRAINS_DB_LOCK_TIMEOUT_MS = 10000
# A transient database error (connection lost, server restarting, serialization failure,
# statement or lock timeout) while the runner stages, checkpoints or finishes is retried with a
# jittered backoff for at most this many seconds in all, reconnecting each time. 0 = no retry.
DRAINS_DB_RETRY_SECONDS = 60.0
# TEST AND BENCH ONLY: no journal (and, with DRAINS_DB_RETRY_SECONDS = 0, no reconnect), to show
# the paid results a database fault loses without them.
DRAINS_JOURNAL_UNSAFE_OFF = False

# The quota autopilot (drains/quota/rate.py, drains/quota/autopilot.py; docs/quota.md).
# The spend rate's default before anything is measured: weekly utilization per hour of drain
# work (0.01 = 1 %/h). Low on purpose: too low only starts an autopilot burst early.
DRAINS_QUOTA_DEFAULT_SPEND_RATE = 0.01
# Two samples of one run further apart than this are a wait, not work (left out of the rate).
DRAINS_QUOTA_RATE_MAX_GAP_SECONDS = 600.0
# The 5-hour window's length and the weekly window's: the service's (the forecast's week start is
# the weekly reset minus it).
DRAINS_QUOTA_SESSION_HOURS = 5.0
DRAINS_QUOTA_WEEK_HOURS = 168.0
# The autopilot starts a burst when the time left to the weekly reset is at most
# room / rate x this margin + one supervisor interval: a quarter more time than the rate says.
DRAINS_AUTOPILOT_SAFETY_MARGIN = 1.25
# In a burst, a run that hit a session (5-hour) limit waits for its reset and goes on this many
# seconds after it (drains/runner/session_wait.py): no open window left idle.
DRAINS_SESSION_RESUME_SECONDS = 2.0
# The longest such wait inside a run (a session limit, a weekly ceiling the reserve's release
# lifts); a longer one ends the run and the supervisor starts the drain again after it.
DRAINS_BURST_WAIT_MAX_HOURS = 6.0
# How often the supervisor ticks: its cron line's interval.
DRAINS_SUPERVISOR_INTERVAL_MINUTES = 15.0

# --- Halacha extraction -----------------------------------------------------------------------
HALACHA_EXTRACTOR = env_text("HALACHA_EXTRACTOR", "offline")
# The backends by name (halacha/extractors BACKENDS), or a class of one's own as module:Class.
if not re.fullmatch(r"offline|anthropic|claude-cli|[A-Za-z_][\w.]*:[A-Za-z_]\w*", HALACHA_EXTRACTOR):
    raise ImproperlyConfigured(
        f"HALACHA_EXTRACTOR={HALACHA_EXTRACTOR!r} is not a backend; use offline, anthropic, "
        "claude-cli or module.path:ClassName."
    )
# claude-sonnet-4-5 reaches end-of-life on 2026-11-30 (the SDK's deprecation table); 4-6 follows it.
HALACHA_MODEL = env_str("HALACHA_MODEL", "claude-sonnet-4-6")
ANTHROPIC_API_KEY = env_str("ANTHROPIC_API_KEY")
CLAUDE_CLI = env_str("CLAUDE_CLI", "claude")
# The model the CLI runs (--model): an alias or a full name. Sonnet, not the CLI's own default
# (the most expensive model, with its own weekly limit); see the README.
HALACHA_CLI_MODEL = env_str("HALACHA_CLI_MODEL", "sonnet")
# Extra CLI flags, shell syntax; flags that could give the model tools are refused (claude_cli).
HALACHA_CLI_EXTRA_ARGS = env_str("HALACHA_CLI_EXTRA_ARGS", "")
# The CLI's account lives in its config dir; part of the quota key (and passed to the CLI).
CLAUDE_CONFIG_DIR = env_str("CLAUDE_CONFIG_DIR")
# Constants (see "The runtime's constants" above). A reply's token limit: far above any
# decision's rules, so a reply cut off there is an error, not a short answer.
HALACHA_MAX_TOKENS = 4096
# One CLI call or Messages API call may take this long before it counts as failed (the SDK never
# retries); a decision's extraction takes under two minutes.
HALACHA_CLI_TIMEOUT_SECONDS = 300.0
HALACHA_API_TIMEOUT_SECONDS = 300.0
# Mark the anthropic backend's system prompt for prompt caching (cache_control, ephemeral): later
# calls within the cache's lifetime read it at a tenth of the input price (bench/prompt_cache.py).
HALACHA_PROMPT_CACHE = True
# SIGTERM to SIGKILL for a hung run: a SIGTERMed run finishes the call in flight (its result goes
# to the journal), so the grace outlasts the CLI's timeout.
DRAINS_HUNG_KILL_GRACE_SECONDS = HALACHA_CLI_TIMEOUT_SECONDS + 5.0

# --- Schedule ---------------------------------------------------------------------------------
class _Declared(Sequence):
    """CRONJOBS as the drains and jobs declare their cron slots (``Drain.schedule``,
    ``registry.register_job``), built by ``drains.schedule.declared_cronjobs`` each time it is
    read: after the apps have loaded, never at settings load. django-crontab, run_scheduler,
    ``manage.py schedule`` and the page all read it. A host's settings module may add lines of
    its own (``CRONJOBS + [...]``, still read late) or replace it with a list."""

    def __init__(self, builder: str, extra: tuple = ()) -> None:
        self._builder = builder
        self._extra = extra

    def __add__(self, other: Sequence) -> _Declared:
        return _Declared(self._builder, (*self._extra, *other))

    def __radd__(self, other: Sequence) -> _Declared:
        return self + other

    def _entries(self) -> list:
        from django.apps import apps

        if not apps.ready:
            raise ImproperlyConfigured(
                "CRONJOBS is built from the cron slots the drains and jobs declare, once the apps "
                "have loaded: a settings module cannot read it. Declare a job with "
                "drains.registry.register_job in an app's ready(), add lines with "
                "CRONJOBS + [...], or assign CRONJOBS a list of your own."
            )
        return [*import_string(self._builder)(), *self._extra]

    def __getitem__(self, index):
        return self._entries()[index]

    def __len__(self) -> int:
        return len(self._entries())

    def __iter__(self) -> Iterator:
        return iter(self._entries())

    def __repr__(self) -> str:
        return f"CRONJOBS declared by the drains and jobs ({self._builder})"


CRONJOBS = _Declared("drains.schedule.declared_cronjobs")
# A host's own slot for a declared job, by its command line, in place of the declared one, e.g.
# {"drain_halacha": "12-59/15 * * * *"}; `manage.py check` holds it to the same rules.
DRAINS_SCHEDULE: dict[str, str] = {}
CRONTAB_LOCK_JOBS = True
# The zone cron reads the expressions in, so the zone run_scheduler, `manage.py schedule`, the
# page and the slots read them in too: the host's (TZ, else /etc/localtime). Set it only when the
# cron daemon runs in another zone than the host (TZ in its service unit, cronie's CRON_TZ).
DRAINS_CRON_TZ = env_cron_zone("DRAINS_CRON_TZ")
CRONTAB_DJANGO_PROJECT_NAME = "config"
# Installed lines carry --settings when a host runs with its own settings module.
CRONTAB_DJANGO_SETTINGS_MODULE = settings_module_if_not("config.settings")
# `manage.py crontab add` shells out to this (found on PATH); a prefix such as
# "set -a; . /etc/drains.env; set +a;" gives the jobs the environment cron does not.
CRONTAB_EXECUTABLE = "crontab"
CRONTAB_COMMAND_PREFIX = env_str("CRONTAB_COMMAND_PREFIX", "")

# --- Court fetch (fetch_decisions) ------------------------------------------------------------
# JSON/JSONL files dropped here are imported and moved to imported/ (or failed/).
FETCH_INBOX_DIR = Path(env_text("FETCH_INBOX_DIR", str(VAR_DIR / "inbox")))
FETCH_FEED_URL = env_http_url("FETCH_FEED_URL")  # optional HTTP(S) feed: a JSON array or JSONL
FETCH_FEED_TIMEOUT_SECONDS = 60.0  # a constant: a feed slower than a minute is down

# --- Email (send_digest): console unless EMAIL_HOST is set ------------------------------------
EMAIL_HOST = env_str("EMAIL_HOST")
if EMAIL_HOST:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_PORT = env_int("EMAIL_PORT", 587, minimum=1, maximum=65535)
    EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
    EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
    # The port says the protocol: 465 implicit TLS; 25 plain SMTP, to a relay on the host or the
    # private network; any other (587, the submission port) STARTTLS.
    EMAIL_USE_SSL = EMAIL_PORT == 465
    EMAIL_USE_TLS = EMAIL_PORT not in (25, 465)
    EMAIL_TIMEOUT = 30
else:
    EMAIL_HOST = "localhost"
    # The digest goes to the console: the job's log.
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", f"drains@{socket.gethostname()}")
env_emails("DEFAULT_FROM_EMAIL", [])  # checked when set
DIGEST_RECIPIENTS = env_emails("DIGEST_RECIPIENTS", [])
# Where people reach the web app: the digest links each failed run's page under it.
DRAINS_SITE_URL = env_text("DRAINS_SITE_URL", "http://127.0.0.1:8000").rstrip("/")
