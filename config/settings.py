"""Django settings: what differs between deployments from the environment (config/env.py),
the rest constants with their reasons.

DATABASE_URL selects the database (PostgreSQL only); unset, the embedded PostgreSQL in
var/pgdata is used and started on first use. docs/deploy.md lists the production variables.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

from config.env import (
    BASE_DIR,
    VAR_DIR,
    dead_peer_options,
    env_bool,
    env_choice,
    env_int,
    env_list,
    env_str,
    parse_database_url,
    refuse_placeholder,
)
from config.secret_key import read_or_create as read_or_create_secret_key

DEBUG = env_bool("DJANGO_DEBUG", False)
# Never a key that anyone else knows: DJANGO_SECRET_KEY, else one generated once into var/
# (config/secret_key.py). Several web hosts need one shared key: `check --deploy` says so.
SECRET_KEY_FILE = VAR_DIR / "secret_key"
SECRET_KEY = env_str("DJANGO_SECRET_KEY")
refuse_placeholder("DJANGO_SECRET_KEY", SECRET_KEY)
SECRET_KEY_SOURCE = "environment"
if SECRET_KEY is None:
    SECRET_KEY = read_or_create_secret_key(SECRET_KEY_FILE)
    SECRET_KEY_SOURCE = "file"
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

# --- Behind TLS or a proxy (docs/deploy.md) ---------------------------------------------------
# DJANGO_HTTPS=1: the site is served over HTTPS only (by this host or a proxy in front of it):
# secure cookies, a redirect from http://, and HSTS for a year, subdomains included, marked for
# the browsers' preload list (submitting the domain is the owner's step). A host's own settings
# module may change any of them (docs/deploy.md).
HTTPS = env_bool("DJANGO_HTTPS", False)
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_SSL_REDIRECT = HTTPS
# A load balancer probing plain HTTP must still reach the health check.
SECURE_REDIRECT_EXEMPT = [r"^api/health/$"]
SECURE_HSTS_SECONDS = 31_536_000 if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS
# A TLS-terminating proxy says the original scheme in a header; name it (X-Forwarded-Proto)
# only when the proxy always sets it, or any client could claim https.
_proxy_header = env_str("DJANGO_PROXY_SSL_HEADER")
if _proxy_header and not re.fullmatch(r"[A-Za-z0-9-]+", _proxy_header):
    raise ImproperlyConfigured(
        f"DJANGO_PROXY_SSL_HEADER={_proxy_header!r} is not a header name; e.g. X-Forwarded-Proto."
    )
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_" + _proxy_header.upper().replace("-", "_"), "https") if _proxy_header else None
)

INSTALLED_APPS = [
    "config",  # the project's own deployment checks (config/checks.py)
    # Our apps first: drains overrides the built-in `migrate` command with the locked gate.
    "drains",
    "halacha",
    "operations",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "knox",  # hashed, expiring API tokens (the model is operations.ApiToken)
    "axes",  # login lockout after repeated failures
    "csp",  # Content-Security-Policy header (django-csp)
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI / Redoc files served locally: no CDN needed
    "django_crontab",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Serves static files (the /operations page, the API docs) in any deployment, no web server
    # config needed; from the apps' static/ folders, or from STATIC_ROOT once collected.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",  # Content-Security-Policy (see the CSP block below)
    "operations.middleware.NoStoreApiMiddleware",  # Cache-Control: no-store on /api/ and /metrics
    # Last, as django-axes requires: answers a locked-out login before the view runs.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database: PostgreSQL only ----------------------------------------------------------------
# Where the data lives never changes silently: these once moved the embedded server's data and
# database and are read no more. Only their names are looked at.
_moved = sorted({"DRAINS_PGDATA", "DRAINS_EMBEDDED_DB_NAME"}.intersection(os.environ))
if _moved:
    raise ImproperlyConfigured(
        f"{' and '.join(_moved)} is no longer read: the embedded PostgreSQL keeps database "
        "'drains' in DRAINS_VAR_DIR/pgdata. Set DRAINS_VAR_DIR to the folder holding your pgdata "
        "(or DATABASE_URL to your server), then unset it (docs/deploy.md, 'Upgrades')."
    )
_database_url = env_str("DATABASE_URL")
refuse_placeholder("DATABASE_URL", _database_url)
if _database_url:
    _default_db = parse_database_url(_database_url)
else:
    _default_db = {
        "ENGINE": "config.embedded_pg",
        "NAME": "drains",
        "USER": "postgres",
        "PASSWORD": "",
        "HOST": "",  # filled with the socket directory when the server is started
        "PORT": "",
        "OPTIONS": {},
    }
_default_db["OPTIONS"].setdefault(
    # Names the process in pg_stat_activity, so that lock reports say who holds what.
    "application_name",
    f"drains@{socket.gethostname()}",
)
# A vanished host's sessions end, and its advisory locks are freed, within this bound
# (TCP keepalives on both ends; docs/deploy.md). 0 turns it off, e.g. behind a PgBouncer that
# refuses the `options` startup parameter (or set its ignore_startup_parameters = options).
DRAINS_DB_DEAD_PEER_SECONDS = env_int("DRAINS_DB_DEAD_PEER_SECONDS", 60, minimum=0, maximum=86_400)
_default_db["OPTIONS"] = dead_peer_options(DRAINS_DB_DEAD_PEER_SECONDS, _default_db["OPTIONS"])
# Every connection (Django's and each lock session, which take these parameters) gives up on a
# server that accepts the TCP connection and never answers after this many seconds (a constant:
# a server that does not answer in 10 s is down for a job that runs every 15 minutes).
DRAINS_DB_CONNECT_TIMEOUT_SECONDS = 10
_default_db["OPTIONS"].setdefault("connect_timeout", str(DRAINS_DB_CONNECT_TIMEOUT_SECONDS))
_default_db["CONN_MAX_AGE"] = 0
DATABASES = {"default": _default_db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "Asia/Jerusalem"
# The admin's times in the one notation of drains/clock.py (config/formats/en/formats.py).
FORMAT_MODULE_PATH = ["config.formats"]
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
WHITENOISE_USE_FINDERS = True
LOGIN_URL = "/admin/login/"
LOGIN_REDIRECT_URL = "/operations"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        # Stamped in the operator's zone with its abbreviation, whatever the host's TZ.
        "plain": {"()": "drains.clock.LogFormatter",
                  "format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
    },
    "filters": {
        # 4xx out of the error log; a 403 in one line (config/logfilters.py).
        "client_errors": {"()": "config.logfilters.ClientErrors"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
    },
    "root": {"handlers": ["console"], "level": env_choice(
        "DJANGO_LOG_LEVEL", "INFO", ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
    )},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "django.request": {"filters": ["client_errors"]},
        "pgserver": {"level": "WARNING"},
        "axes": {"level": "WARNING"},  # not its start-up banner in every command's output
    },
}

# --- REST framework ---------------------------------------------------------------------------
REST_FRAMEWORK: dict[str, Any] = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "operations.authentication.HashedTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
    # --- Errors: every API error is JSON in one shape (operations/errors.py) ---
    "EXCEPTION_HANDLER": "operations.errors.api_exception_handler",
    "DEFAULT_PARSER_CLASSES": ["operations.errors.LimitedJSONParser"],
    # JSON only: the browsable API would answer HTML (and HTML errors) to a browser.
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Drain operations API",
    "DESCRIPTION": "Snapshot of scheduled services and the burst toggle for drains.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The docs page loads its assets from drf-spectacular-sidecar, never from a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Two fields are called "kind" (a backoff's limit, a service's kind): name their enums.
    "ENUM_NAME_OVERRIDES": {
        "LimitKindEnum": "drains.quota.kinds.LimitKind",
        "ServiceKindEnum": ["drain", "supervisor", "job"],
        "RunStatusEnum": "drains.models.RunStatus",
        "HealthStatusEnum": ["ok", "unavailable"],
    },
    # Request bodies refuse unknown fields, so the schema says so (additionalProperties: false).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "operations.openapi.closed_request_bodies",
    ],
}
# --- Content-Security-Policy (django-csp): scripts and styles from this origin only ------------
# The /operations page, the admin and the API docs (SpectacularSwaggerSplitView) run no inline
# script. The burn-down charts are same-origin SVG images; nothing is loaded from elsewhere.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}

# --- Shared cache: throttle counters (every worker and host must see the same counts) ---------
# The database by default (table django_cache, created by a migration), Redis when REDIS_URL is set.
REDIS_URL = env_str("REDIS_URL")
if REDIS_URL and urlsplit(REDIS_URL).scheme not in ("redis", "rediss", "unix"):
    raise ImproperlyConfigured(
        f"REDIS_URL={REDIS_URL!r} is not a redis://, rediss:// or unix:// URL."
    )
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                          "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache",
                          "LOCATION": "django_cache"}}

# --- API throttles (operations/throttles.py): answered 429 with Retry-After ------------------
# DRF rates; None turns one off. Ten times what the page and a script need (the page polls every
# 15 s), far below what guessing tokens or a runaway client would send.
DRAINS_API_THROTTLE_RATES: dict[str, str | None] = {
    # every request from one client address, counted before authentication
    "address": "300/min",
    # rejected tokens from one client address (guessing tokens)
    "auth_failure": "10/min",
    # one user's requests, and one user's burst toggles
    "user": "120/min",
    "burst": "20/min",
}
# How many reverse proxies add X-Forwarded-For in front of the app; 0 = use the peer address
# (a client could otherwise pick its own address by sending the header).
REST_FRAMEWORK["NUM_PROXIES"] = env_int("DRAINS_NUM_PROXIES", 0, minimum=0)

# --- Login lockout (django-axes): lifted by `manage.py axes_reset_username USER` etc. ---------
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = 5  # failed logins before the lockout: a person mistypes fewer
# A username is locked from the address that failed; other addresses are locked on their own.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_COOLOFF_TIME = timedelta(hours=1)  # slows guessing to 5 passwords an hour
AXES_RESET_ON_SUCCESS = True
AXES_IPWARE_PROXY_COUNT = REST_FRAMEWORK["NUM_PROXIES"] or None
AXES_IPWARE_META_PRECEDENCE_ORDER = (
    ["HTTP_X_FORWARDED_FOR", "REMOTE_ADDR"] if REST_FRAMEWORK["NUM_PROXIES"] else ["REMOTE_ADDR"]
)
AXES_COOLOFF_MESSAGE = (
    "This login is locked after too many failed attempts. Try again later, or ask an operator "
    "to run: manage.py axes_reset_username <username>"
)

# --- API tokens (django-rest-knox): stored as a SHA-512 digest, each with a name and expiry ----
KNOX_TOKEN_MODEL = "operations.ApiToken"
# knox's own migrations would create its default token table (and its content type) although
# the model is swapped for operations.ApiToken; the app has nothing else to migrate.
MIGRATION_MODULES = {"knox": None}
REST_KNOX = {
    # The default lifetime; mint_token --days gives another (operations/tokens.py).
    "TOKEN_TTL": timedelta(days=90),
    "AUTH_HEADER_PREFIX": "Token",
    "AUTO_REFRESH": False,
}

# --- Prometheus metrics (GET /metrics, operations/metrics.py) -------------------------------
# Open to these addresses/networks (the peer address), or to "Authorization: Bearer <token>".
DRAINS_METRICS_ALLOWED_IPS = env_list("DRAINS_METRICS_ALLOWED_IPS", ["127.0.0.1", "::1"])
for _network in DRAINS_METRICS_ALLOWED_IPS:
    try:
        ipaddress.ip_network(_network, strict=False)
    except ValueError:
        raise ImproperlyConfigured(
            f"DRAINS_METRICS_ALLOWED_IPS: {_network!r} is not an address or network "
            "(e.g. 10.0.0.5 or 10.0.0.0/24)."
        ) from None
DRAINS_METRICS_TOKEN = env_str("DRAINS_METRICS_TOKEN")

# The largest request body the API reads (bytes); larger ones get a JSON 413. The API's largest
# body (a burst with its reason) is under 2 KiB.
DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024

# --- The project's own settings (drains, halacha, schedule, fetch, email) -----------------
from config.app_settings import *  # noqa: E402, F403

BASE_DIR = BASE_DIR
