from django.apps import AppConfig


class DrainsConfig(AppConfig):
    name = "drains"
    verbose_name = "Drains"

    def ready(self):
        from django.core import checks

        from drains import registry
        from drains.checks import check_schedule

        # The supervisor's tick, every DRAINS_SUPERVISOR_INTERVAL_MINUTES, between the drains'.
        registry.register_job("supervise_drains", schedule="5-59/15 * * * *")

        # `manage.py check` fails when two scheduled jobs can fire in the same minute.
        checks.register(check_schedule, "schedule")
