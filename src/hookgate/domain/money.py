"""The range an amount of money must fall in to be taken in and added up.

No parking fee, charging cost or VAT ever reaches a billion in any currency, nor needs
more than six decimal places; a number beyond that is an error or an attack. Refusing it
at the door keeps `Decimal` arithmetic exact (28 significant digits: a sum of millions of
in-range amounts cannot round) and keeps every report able to add up what was stored.
"""

from __future__ import annotations

from decimal import Decimal

MAX_AMOUNT = Decimal(1_000_000_000)  # exclusive bound on |amount|
MAX_PLACES = 6  # decimal places, trailing zeros not counted
_SHOWN = 40


def amount_problem(value: Decimal) -> str | None:
    """Why `value` is no amount of money hookgate takes in; None when it is one."""
    if not value.is_finite():
        return f"{value} is not a finite number"
    _, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite
    if not any(digits):
        return None  # zero, however it is written
    if value.adjusted() >= 9:
        return f"{_short(value)} is not below {MAX_AMOUNT:,} in magnitude"
    trailing = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    if exponent < 0 and -exponent - trailing > MAX_PLACES:
        return f"{_short(value)} has more than {MAX_PLACES} decimal places"
    return None


def _short(value: Decimal) -> str:
    text = str(value)
    return text if len(text) <= _SHOWN else f"{text[:_SHOWN]}... ({len(text)} characters)"
