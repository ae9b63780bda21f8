"""drains/failures.py: one classified line per failure, the traceback apart."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import OperationalError

from drains.failures import classify, describe_failure, reason_line
from drains.locks import LockLost
from halacha.extractors.base import ExtractionError
from halacha.fetch import FetchError
from halacha.records import RecordError


def _raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:  # noqa: BLE001 - the test wants the traceback attached
        return caught


@pytest.mark.parametrize(("exc", "kind"), [
    (ImproperlyConfigured("HALACHA_EXTRACTOR='bogus' is not a known backend"), "configuration"),
    (OperationalError("server closed the connection unexpectedly"), "database"),
    (LockLost("the lock connection died"), "database"),
    (ExtractionError("the model returned no JSON"), "extractor"),
    (FetchError("the feed answered HTTP 404"), "input"),
    (RecordError("line 3: no text"), "input"),
    (KeyError("oops"), "internal"),
])
def test_classify(exc, kind):
    assert classify(exc) == kind


def test_classify__a_wrapper_takes_the_kind_of_what_it_wraps():
    try:
        try:
            raise OperationalError("connection refused")
        except OperationalError as inner:
            raise RuntimeError("could not promote") from inner
    except RuntimeError as outer:
        assert classify(outer) == "database"


def test_describe_failure__one_line_and_the_traceback():
    failure = describe_failure(_raised(ImproperlyConfigured("HALACHA_EXTRACTOR='bogus'\nuse one of: api, cli")))
    assert failure.error == "ImproperlyConfigured: HALACHA_EXTRACTOR='bogus' use one of: api, cli"
    assert failure.error_kind == "configuration"
    assert failure.error_traceback.startswith("Traceback (most recent call last):")
    assert "_raised" in failure.error_traceback


def test_describe_failure__a_long_message_is_clipped():
    failure = describe_failure(_raised(ValueError("x" * 5000)))
    assert len(failure.error) == 300 and failure.error.endswith("…")


def test_reason_line():
    assert reason_line(error="ImproperlyConfigured: bad", error_kind="configuration") == (
        "configuration error: ImproperlyConfigured: bad")
    assert reason_line(error="") == ""
    # A row stored before the split: the exception's own line, not the traceback's first.
    legacy = ('Traceback (most recent call last):\n  File "x.py", line 1, in <module>\n'
              "    boom()\nValueError: feed down")
    assert reason_line(error=legacy) == "ValueError: feed down"
