"""drains/wording.py: counts with the right plural, rates rounded for people."""

from __future__ import annotations

import pytest

from drains.wording import per_hour, plural, rounded


@pytest.mark.parametrize(("n", "word", "text"), [
    (1, "run", "1 run"), (0, "run", "0 runs"), (2, "record", "2 records"),
    (1, "is", "1 is"), (3, "was", "3 were"),
])
def test_plural(n, word, text):
    assert plural(n, word) == text


def test_plural_takes_a_drains_own_plural():
    assert plural(3, "halacha", "halachot") == "3 halachot"
    assert plural(1, "halacha", "halachot") == "1 halacha"


@pytest.mark.parametrize(("value", "text"), [
    (0, "0"), (0.4249, "0.42"), (7.48, "7.5"), (38.2, "38"), (1240.6, "1,241"),
    (12_345, "12 k"), (1_588_809.68, "1.6 M"),
])
def test_rounded(value, text):
    assert rounded(value) == text


def test_per_hour():
    assert per_hour(1_588_809.68) == "1.6 M per hour"
    assert per_hour(0) == "none per hour"
