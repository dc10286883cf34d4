from fractions import Fraction

import pytest

from kubelite.machinery.quantity import QuantityError, parse_quantity


@pytest.mark.parametrize(("text", "value"), [
    ("1", Fraction(1)),
    ("500m", Fraction(1, 2)),
    ("0.5", Fraction(1, 2)),
    ("128Mi", Fraction(128 * 2**20)),
    ("1Gi", Fraction(2**30)),
    ("1G", Fraction(10**9)),
    ("2k", Fraction(2000)),
    ("1e3", Fraction(1000)),
    ("1E-3", Fraction(1, 1000)),
    ("100n", Fraction(1, 10**7)),
    ("+1.5Ki", Fraction(1536)),
    ("-1", Fraction(-1)),
    (".5", Fraction(1, 2)),
])
def test_parse(text: str, value: Fraction) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "abc", "1Kb", "1 Mi", " 1", "1.2.3", "Mi", "1ki", "1e"])
def test_rejects(text: str) -> None:
    with pytest.raises(QuantityError):
        parse_quantity(text)


def test_equal_spellings() -> None:
    assert parse_quantity("1000m") == parse_quantity("1") == parse_quantity("1e0")
