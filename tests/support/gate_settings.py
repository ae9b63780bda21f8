"""Settings for schema-gate test children: the project's settings plus the test-only gate_app."""

from config.settings import INSTALLED_APPS as _PROJECT_APPS
from tests.support.settings import *  # noqa: F403

INSTALLED_APPS = [*_PROJECT_APPS, "tests.support.gate_app.apps.GateAppConfig"]
