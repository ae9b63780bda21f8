"""Deployment checks of the project's own settings (``manage.py check --deploy``)."""

from django.conf import settings
from django.core.checks import Tags, Warning, register


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
