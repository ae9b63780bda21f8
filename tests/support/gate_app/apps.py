from django.apps import AppConfig


class GateAppConfig(AppConfig):
    name = "tests.support.gate_app"
    label = "gate_app"
    default_auto_field = "django.db.models.BigAutoField"
