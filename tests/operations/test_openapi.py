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

import pytest
import yaml

from tests.support.db import ROOT, child_env


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


JOB_PROBE = (
    "import sys; from django.core.management import execute_from_command_line; "
    "execute_from_command_line(['manage.py', *sys.argv[1:]]); "
    "print('imported:', 'config.urls' in sys.modules, 'drf_spectacular.plumbing' in sys.modules)"
)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("job", [["supervise_drains"], ["drain_metadata", "--max-items", "1"]])
def test_a_job_process_runs_its_checks_without_the_url_conf_or_the_schema_machinery(job):
    """A cron job (JobCommand, DrainCommand) runs the system checks of JOB_CHECKS, not the
    admin's and the URL conf's, which import the API and drf-spectacular (0.25 s per start)."""
    result = subprocess.run(
        [sys.executable, "-c", JOB_PROBE, *job], cwd=ROOT, capture_output=True, text=True,
        timeout=120, env=child_env(),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "imported: False False"


def test_manage_py_check_still_runs_the_url_and_admin_checks():
    result = subprocess.run(
        [sys.executable, "-c", JOB_PROBE, "check"], cwd=ROOT, capture_output=True, text=True,
        timeout=120, env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "imported: True True"
