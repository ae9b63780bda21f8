from django.apps import AppConfig


class HalachaConfig(AppConfig):
    name = "halacha"
    verbose_name = "Halacha extraction"

    def ready(self):
        # The halacha drain registers itself with the drains runtime (drains imports no sibling).
        from drains import registry
        from halacha import drain, evaluation  # noqa: F401

        # The court fetch, hourly, between the drains' minutes.
        registry.register_job("fetch_decisions", schedule="17 * * * *")
