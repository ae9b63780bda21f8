"""drains/wording.py: counts with the right plural, rates rounded for people."""

from __future__ import annotations

import pytest

from drains.wording import per_hour, plural, rounded


@pytest.mark.parametrize(("n", "word", "text"), [
    (1, "run", "1 run"), (0, "run", "0 runs"), (2, "record", "2 records"),
    (1, "halacha", "1 halacha"), (3, "halacha", "3 halachot"),
])
def test_plural(n, word, text):
    assert plural(n, word) == text


@pytest.mark.parametrize(("value", "text"), [
    (0, "0"), (0.4249, "0.42"), (7.48, "7.5"), (38.2, "38"), (1240.6, "1,241"),
    (12_345, "12 k"), (1_588_809.68, "1.6 M"),
])
def test_rounded(value, text):
    assert rounded(value) == text


def test_per_hour():
    assert per_hour(1_588_809.68) == "1.6 M per hour"
    assert per_hour(0) == "none per hour"
