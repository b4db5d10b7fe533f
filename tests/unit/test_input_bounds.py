"""The decode layer's bounds (nesting, UTF-8) and the range of money amounts."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from hookgate.domain.money import amount_problem
from hookgate.providers.base import MAX_DEPTH, Reject, decode, nesting_depth


def nested(levels: int) -> bytes:
    return b'{"a":' * levels + b"1" + b"}" * levels


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        (b"1", 0),
        (b"{}", 1),
        (b'[{"a": [1, {"b": []}]}, []]', 5),
        (b'{"a": "[[[[{{{{"}', 1),  # brackets in strings do not count
        (b'{"a": "\\"[[[", "b": ["]]]\\\\"]}', 2),  # nor after escaped quotes
        (b"[" * 100_000, 100_000),  # unclosed: still measured, without recursion
    ],
)
def test_nesting_depth_ignores_strings(text: bytes, depth: int) -> None:
    assert nesting_depth(text) == depth


def test_nesting_up_to_the_bound_is_parsed_and_beyond_it_refused() -> None:
    assert decode(nested(MAX_DEPTH), dict[str, Any])["a"]
    for levels in (MAX_DEPTH + 1, 1_000, 30_000):
        with pytest.raises(Reject) as refused:
            decode(nested(levels), dict[str, Any])
        assert (refused.value.status, refused.value.code) == (400, "nesting-too-deep")
        assert str(levels) in refused.value.detail
    # Wide is not deep: many brackets side by side are fine.
    assert len(decode(json.dumps([[1]] * 10_000).encode(), list[Any])) == 10_000


@pytest.mark.parametrize(
    "body",
    [b'{"a": "\xff"}', b'{"a": "\xc3"}', b'{"a": "\xed\xa0\x80"}', b'{"skipped": "\xfe", "a": 1}'],
)
def test_bytes_that_are_not_utf8_are_malformed_json(body: bytes) -> None:
    with pytest.raises(Reject) as refused:
        decode(body, dict[str, Any])
    assert (refused.value.status, refused.value.code) == (400, "malformed-json")
    assert "UTF-8" in refused.value.detail


def test_utf8_text_passes() -> None:
    assert decode('{"a": "Nyköping ⚡"}'.encode(), dict[str, Any]) == {"a": "Nyköping ⚡"}


@pytest.mark.parametrize(
    "text", ["0", "-0", "22.45", "-999999999.999999", "0E-50", "1.50000000", "0.000001"]
)
def test_amounts_in_range(text: str) -> None:
    assert amount_problem(Decimal(text)) is None


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("1E+400", "below"),
        ("1e999999999", "below"),
        ("1000000000", "below"),
        ("-1E+26", "below"),
        ("9" * 5000, "5000 characters"),
        ("1.0000001", "decimal places"),
        ("NaN", "finite"),
        ("-Infinity", "finite"),
        ("sNaN", "finite"),
    ],
)
def test_amounts_out_of_range(text: str, why: str) -> None:
    problem = amount_problem(Decimal(text))
    assert problem is not None and why in problem
    assert len(problem) < 200


def test_an_easypark_amount_out_of_range_names_its_field() -> None:
    from hookgate.providers.easypark import ParkingTransaction

    doc = {
        "parkingId": 1,
        "licenseNumber": "ABC123",
        "startDate": "2025-12-04T12:02:37Z",
        "endDate": "2025-12-04T13:12:00Z",
        "price": 22.45,
        "priceVatAmount": 4.49,
        "priceExclusiveVatAmount": 17.96,
        "currency": "SEK",
    }
    assert decode(json.dumps(doc).encode(), ParkingTransaction).price == Decimal("22.45")
    body = json.dumps(doc).encode().replace(b"4.49", b"1e999999999")
    with pytest.raises(Reject) as refused:
        decode(body, ParkingTransaction)
    assert refused.value.status == 422
    assert "priceVatAmount" in refused.value.detail
