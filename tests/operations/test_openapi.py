"""operations/openapi.py: the published schema carries its extensions in a fresh process.

The token scheme registers itself when its module is imported, and that import lives in the
URL conf (config/urls.py), not in the app's start-up, so that cron jobs do not pay for
drf-spectacular's imports: a process that only generates the schema (``manage.py spectacular``)
must still get it.
"""

from __future__ import annotations

import os
import subprocess
import sys

import yaml

from tests.support.db import ROOT


def test_the_schema_generated_in_a_fresh_process_names_the_token_scheme_and_closes_bodies():
    result = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "spectacular", "--skip-checks"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"},
    )
    assert result.returncode == 0, result.stderr
    schema = yaml.safe_load(result.stdout)
    token = schema["components"]["securitySchemes"]["tokenAuth"]
    assert (token["type"], token["in"], token["name"]) == ("apiKey", "header", "Authorization")
    bodies = [c for name, c in schema["components"]["schemas"].items()
              if name.endswith("Request") and c.get("type") == "object"]
    assert bodies and all(c["additionalProperties"] is False for c in bodies)


def test_a_job_process_does_not_import_the_schema_machinery():
    probe = ("import django; django.setup(); import sys; "
             "print('drf_spectacular.plumbing' in sys.modules, 'operations.openapi' in sys.modules)")
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]
