from django.apps import AppConfig


class ConfigConfig(AppConfig):
    """The project itself as an app, so that its deployment checks are registered."""

    name = "config"
    verbose_name = "Project configuration"

    def ready(self):
        from config import checks  # noqa: F401  (registers the checks)
