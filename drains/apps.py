from django.apps import AppConfig


class DrainsConfig(AppConfig):
    name = "drains"
    verbose_name = "Drains"

    def ready(self):
        from django.core import checks

        from drains.checks import check_schedule

        # `manage.py check` fails when two scheduled jobs can fire in the same minute.
        checks.register(check_schedule, "schedule")
