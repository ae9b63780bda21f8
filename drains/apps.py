from django.apps import AppConfig


class DrainsConfig(AppConfig):
    name = "drains"
    verbose_name = "Drains"
