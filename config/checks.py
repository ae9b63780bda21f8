"""Checks of the project's own settings: the environment's (``manage.py check``) and the
deployment's (``manage.py check --deploy``)."""

import os

from django.conf import settings
from django.core.checks import Tags, Warning, register

from config import env

# Ours by their prefix; the web server's config reads DRAINS_WEB_BIND, no manage.py process does.
_OUR_PREFIXES = ("DRAINS_", "HALACHA_", "FETCH_")
_READ_BY_THE_WEB_SERVER = {"DRAINS_WEB_BIND"}
# Variables of Django's prefixes that the settings once read and read no more (issue 30).
_RETIRED = {
    "DJANGO_CSRF_COOKIE_SECURE", "DJANGO_DATA_UPLOAD_MAX_MEMORY_SIZE", "DJANGO_HSTS_INCLUDE_SUBDOMAINS",
    "DJANGO_HSTS_PRELOAD", "DJANGO_HSTS_SECONDS", "DJANGO_SECURE_SSL_REDIRECT",
    "DJANGO_SESSION_COOKIE_SECURE", "EMAIL_BACKEND", "EMAIL_FILE_PATH", "EMAIL_TIMEOUT",
    "EMAIL_USE_SSL", "EMAIL_USE_TLS", "CRONTAB_EXECUTABLE",
}


@register("config")
def unread_variables(app_configs, **kwargs):
    """A variable of ours that is set but that nothing reads: a tuning knob that became a
    constant, or a typo. Only the names are looked at (``os.environ``'s keys), never a value."""
    unread = sorted(
        name for name in os.environ
        if (name.startswith(_OUR_PREFIXES) or name in _RETIRED)
        and name not in env.READ and name not in _READ_BY_THE_WEB_SERVER
    )
    if not unread:
        return []
    return [
        Warning(
            f"Set in the environment but read by nothing: {', '.join(unread)}.",
            hint=(
                "A misspelt name, or a runtime constant that is no longer an environment variable "
                "(README.md, 'Configuration', lists the variables read). To change a constant, "
                "set it in a settings module of the host's own (docs/deploy.md, \"A host's own "
                "settings\"); otherwise remove the variable."
            ),
            id="config.W002",
        )
    ]


@register(Tags.security, deploy=True)
def secret_key_is_shared(app_configs, **kwargs):
    if settings.DEBUG or settings.SECRET_KEY_SOURCE != "file":
        return []
    return [
        Warning(
            "DJANGO_SECRET_KEY is not set: this host signs sessions and CSRF tokens with a key "
            f"generated into {settings.SECRET_KEY_FILE}, which no other host has.",
            hint=(
                "Several web hosts need one shared key: generate one (python -c 'import "
                "secrets; print(secrets.token_urlsafe(48))') and set DJANGO_SECRET_KEY to it on "
                "every host (see docs/deploy.md). On a single host the generated key is fine."
            ),
            id="config.W001",
        )
    ]
