"""Property-based run over the published schema (/api/schema/): schemathesis generates valid and
invalid requests for every operation and runs every one of its checks on each answer: no 5xx,
status code / content type / body / headers as documented, negative data rejected, positive data
accepted, required headers, unsupported methods and the Allow header, ignored auth."""

from __future__ import annotations

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import CHECKS
from schemathesis.config import PositiveDataAcceptanceConfig

ALL_CHECKS = CHECKS.get_all()


def _load_schema():
    from config.wsgi import application

    # The schema the server publishes, fetched from /api/schema/ itself (no database needed).
    loaded = schemathesis.openapi.from_wsgi("/api/schema/", application)
    loaded.config.generation.update(modes=["positive", "negative"], database="none")
    # A schema-valid deadline can still break a rule no schema can state (it must be in the
    # future and before the week boundary): that is a 400 with a message, not a failure.
    loaded.config.checks.positive_data_acceptance = PositiveDataAcceptanceConfig(
        expected_statuses=["2xx", "400", "401", "403", "404"])
    return loaded


schema = _load_schema()


@pytest.fixture
def keep_test_connection(db):
    """As Django's own test client does: a request must not close the connection that holds
    the test's transaction (schemathesis calls the WSGI application directly)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def unthrottled(settings):
    """Hundreds of requests in seconds from one address: the throttles (tested on their own in
    test_throttling.py) would rightly answer 429, which says nothing about the schema."""
    settings.DRAINS_API_THROTTLE_RATES = dict.fromkeys(settings.DRAINS_API_THROTTLE_RATES,
                                                       "100000/min")


@schema.parametrize()
@settings(max_examples=60, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much])
def test_every_operation_answers_per_schema_and_never_5xx(case, token, keep_test_connection,
                                                          unthrottled):
    if "name" in (case.path_parameters or {}) and len(str(case.path_parameters["name"])) % 2 == 0:
        case.path_parameters["name"] = "halacha"  # half the cases reach a real drain
    response = case.call(headers={"Authorization": f"Token {token}"})
    case.validate_response(response, checks=ALL_CHECKS)
