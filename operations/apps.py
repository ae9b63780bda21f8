from django.apps import AppConfig


class OperationsConfig(AppConfig):
    name = "operations"
    verbose_name = "Operations"

    def ready(self):
        from drains import registry

        # The daily digest, before the operators' working day.
        registry.register_job("send_digest", schedule="12 7 * * *")
