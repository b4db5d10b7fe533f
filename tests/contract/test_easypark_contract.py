"""EasyPark Fleet contract over HTTP: 200 for new transactions, 409 for known parkingIds."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest

from support.contract import (
    assert_problem,
    basic,
    compact,
    easypark_headers,
    fixture_bytes,
    fixture_doc,
    inbox,
    rejection_ids,
    rejections_since,
)
from support.gateway import EASYPARK_KEY, EASYPARK_PASSWORD, EASYPARK_USER, Running

pytestmark = pytest.mark.backends("sqlite", "postgresql")

AMOUNTS = (
    "price",
    "priceVatAmount",
    "priceExclusiveVatAmount",
    "transactionFeeExclusiveVatAmount",
    "transactionFeeVatAmount",
    "transactionFee",
)


def test_current_feed_transaction_is_accepted_with_200_and_stored(
    gateway: Running, client: httpx.Client
) -> None:
    body = fixture_bytes("easypark", "current")
    response = client.post("/hooks/easypark", content=body, headers=easypark_headers())
    assert response.status_code == 200, response.text
    (row,) = inbox(gateway, "easypark")
    assert row["raw_body"] == body
    assert row["status"] in {"received", "processed"}  # processing follows the answer
    assert row["flags"] == []
    doc = row["document"]
    assert doc["parkingId"] == 2791368361
    assert doc["parkingUserId"] == 8993734
    assert doc["licenseNumber"] == "ABC123"
    assert doc["parkingAreaName"] == "Nyköpings lasarett, besökande"
    assert doc["currency"] == "SEK"


def test_amounts_are_stored_as_exact_decimal_strings(
    gateway: Running, client: httpx.Client
) -> None:
    body = fixture_bytes("easypark", "current")
    assert (
        client.post("/hooks/easypark", content=body, headers=easypark_headers()).status_code == 200
    )
    doc = inbox(gateway, "easypark")[0]["document"]
    assert {key: doc[key] for key in AMOUNTS} == {
        "price": "22.45",
        "priceVatAmount": "4.49",
        "priceExclusiveVatAmount": "17.96",
        "transactionFeeExclusiveVatAmount": "3.96",
        "transactionFeeVatAmount": "0.99",
        "transactionFee": "4.95",
    }


def test_legacy_feed_without_parking_user_id_is_stored_and_flagged(
    gateway: Running, client: httpx.Client
) -> None:
    body = fixture_bytes("easypark", "legacy")
    assert "parkingUserId" not in fixture_doc("easypark", "legacy")
    response = client.post("/hooks/easypark", content=body, headers=easypark_headers())
    assert response.status_code == 200, response.text
    (row,) = inbox(gateway, "easypark")
    assert "legacy_feed" in row["flags"]
    assert row["raw_body"] == body
    doc = row["document"]
    for key in AMOUNTS:
        assert isinstance(doc[key], str)
        assert Decimal(doc[key]) == Decimal(str(fixture_doc("easypark", "legacy")[key]))


def test_inconsistent_vat_split_is_stored_and_flagged_not_rejected(
    gateway: Running, client: httpx.Client
) -> None:
    body = fixture_bytes("easypark", "inconsistent")
    doc = fixture_doc("easypark", "inconsistent")
    assert Decimal(str(doc["price"])) != Decimal(str(doc["priceExclusiveVatAmount"])) + Decimal(
        str(doc["priceVatAmount"])
    )
    response = client.post("/hooks/easypark", content=body, headers=easypark_headers())
    assert response.status_code == 200, response.text
    (row,) = inbox(gateway, "easypark")
    assert "price_inconsistent" in row["flags"]
    assert row["document"]["price"] == "22.45"
    assert row["document"]["priceExclusiveVatAmount"] == "19.96"


def test_split_within_one_cent_is_consistent(gateway: Running, client: httpx.Client) -> None:
    doc = fixture_doc("easypark", "current") | {"priceExclusiveVatAmount": 17.95}
    response = client.post("/hooks/easypark", content=compact(doc), headers=easypark_headers())
    assert response.status_code == 200
    assert "price_inconsistent" not in inbox(gateway, "easypark")[0]["flags"]


def test_duplicate_parking_id_gets_409_problem_and_is_stored_once(
    gateway: Running, client: httpx.Client
) -> None:
    body = fixture_bytes("easypark", "current")
    first = client.post("/hooks/easypark", content=body, headers=easypark_headers())
    again = client.post("/hooks/easypark", content=body, headers=easypark_headers())
    assert first.status_code == 200
    assert_problem(again, 409)
    # A retry with a changed body is still the same parking session.
    changed = compact(fixture_doc("easypark", "current") | {"licenseNumber": "ABC 123"})
    assert_problem(client.post("/hooks/easypark", content=changed, headers=easypark_headers()), 409)
    assert gateway.count("inbox", "source = 'easypark'") == 1


def test_api_key_source_accepts_key_in_its_own_header(
    gateway: Running, client: httpx.Client
) -> None:
    body = fixture_bytes("easypark", "current")
    headers = {"Content-Type": "application/json", "X-Partner-Key": EASYPARK_KEY}
    response = client.post("/hooks/easypark-key", content=body, headers=headers)
    assert response.status_code == 200, response.text
    (row,) = inbox(gateway, "easypark-key")
    assert row["raw_body"] == body
    assert EASYPARK_KEY not in str(row["headers"])


def test_api_key_source_ignores_key_in_another_header(
    gateway: Running, client: httpx.Client
) -> None:
    body = fixture_bytes("easypark", "current")
    headers = {"Content-Type": "application/json", "X-Api-Key": EASYPARK_KEY}
    assert_problem(client.post("/hooks/easypark-key", content=body, headers=headers), 401)
    assert gateway.count("inbox") == 0


def test_schema_invalid_body_gets_422_problem_is_recorded_and_not_stored(
    gateway: Running, client: httpx.Client
) -> None:
    doc = fixture_doc("easypark", "current")
    del doc["price"]
    body = compact(doc)
    before = rejection_ids(gateway)
    response = client.post("/hooks/easypark", content=body, headers=easypark_headers())
    assert_problem(response, 422)
    assert gateway.count("inbox") == 0
    (rejection,) = rejections_since(gateway, before)
    assert rejection["status"] == 422
    assert rejection["source"] == "easypark"
    assert rejection["body"] == body


@pytest.mark.parametrize(
    "change",
    [
        {"currency": "kronor"},
        {"startDate": "04/12/2025 12:02"},
        {"endDate": "2025-12-04T11:00:00Z"},  # before startDate
        {"parkingId": "2791368361"},
        {"price": None},
        {"licenseNumber": ""},
    ],
    ids=[
        "currency",
        "date-format",
        "end-before-start",
        "id-as-string",
        "price-null",
        "empty-plate",
    ],
)
def test_schema_violations_are_refused_with_422(
    shared_gateway: Running, change: dict[str, object]
) -> None:
    body = compact(fixture_doc("easypark", "current") | change)
    stored = shared_gateway.count("inbox")
    response = httpx.post(
        f"{shared_gateway.url}/hooks/easypark", content=body, headers=easypark_headers()
    )
    assert_problem(response, 422)
    assert shared_gateway.count("inbox") == stored


def test_quarantine_source_stores_schema_invalid_body_with_200(
    gateway: Running, client: httpx.Client
) -> None:
    doc = fixture_doc("easypark", "current")
    del doc["price"]
    body = compact(doc)
    response = client.post("/hooks/easypark-q", content=body, headers=easypark_headers())
    assert response.status_code == 200, response.text
    (row,) = inbox(gateway, "easypark-q")
    assert row["status"] == "quarantined"
    assert row["raw_body"] == body


def test_quarantine_source_stores_valid_body_normally(
    gateway: Running, client: httpx.Client
) -> None:
    body = fixture_bytes("easypark", "current")
    assert (
        client.post("/hooks/easypark-q", content=body, headers=easypark_headers()).status_code
        == 200
    )
    (row,) = inbox(gateway, "easypark-q")
    assert row["status"] in {"received", "processed"}  # processing follows the answer
    assert row["document"]["price"] == "22.45"


def test_basic_password_containing_colons_is_accepted(
    gateway: Running, client: httpx.Client
) -> None:
    assert ":" in EASYPARK_PASSWORD
    body = fixture_bytes("easypark", "current")
    headers = {
        "Content-Type": "application/json",
        "Authorization": basic(EASYPARK_USER, EASYPARK_PASSWORD),
    }
    assert client.post("/hooks/easypark", content=body, headers=headers).status_code == 200
    (row,) = inbox(gateway, "easypark")
    assert EASYPARK_PASSWORD not in str(row["headers"])
    assert row["headers"].get("authorization", "Basic ***") == "Basic ***"


def test_basic_password_cut_at_its_colon_is_refused(gateway: Running, client: httpx.Client) -> None:
    body = fixture_bytes("easypark", "current")
    head = EASYPARK_PASSWORD.split(":", 1)[0]
    response = client.post("/hooks/easypark", content=body, headers=easypark_headers(head))
    assert_problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Basic")
    assert gateway.count("inbox") == 0
