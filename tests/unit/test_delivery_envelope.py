"""The CloudEvents envelope, the router's filters and Standard Webhooks signing."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from hookgate.config import DestinationConfig
from hookgate.delivery.envelope import cloudevent, encode
from hookgate.delivery.router import Router
from hookgate.delivery.signing import sign, signature_headers
from hookgate.domain.events import StoredEvent
from hookgate.providers.ampeco import Ampeco
from hookgate.providers.base import Provider
from hookgate.providers.easypark import EasyPark
from hookgate.providers.ztlment import Ztlment

SECRET = "whsec_" + base64.b64encode(b"a destination secret of 32 bytes").decode()
PROVIDERS: dict[str, Provider[Any]] = {
    "easypark": EasyPark(),
    "ampeco": Ampeco(),
    "ztlment": Ztlment(),
}


def parking(**changes: Any) -> StoredEvent:
    event = StoredEvent(
        id="01JF0000000000000000000001",
        source="easypark",
        provider="easypark",
        event_type="parking.completed",
        received_at=datetime(2025, 12, 4, 12, 2, 37, 123456, tzinfo=UTC),
        subject="parking/4242",
        status="received",
        flags=[],
        document={
            "parkingId": 4242,
            "price": Decimal("12.50"),
            "currency": "NOK",
            "zone": {"code": "OSL-1", "tags": ["airport", "long-term"]},
        },
    )
    return msgspec.structs.replace(event, **changes)


def destination(name: str, **keys: Any) -> DestinationConfig:
    return msgspec.convert(
        {"name": name, "kind": "http", "url": "http://127.0.0.1:9/hooks", **keys},
        DestinationConfig,
    )


# -- envelope ----------------------------------------------------------------------------


def test_envelope_carries_every_cloudevents_attribute() -> None:
    envelope = cloudevent(parking(), PROVIDERS["easypark"])
    assert envelope == {
        "specversion": "1.0",
        "id": "01JF0000000000000000000001",
        "source": "/hookgate/sources/easypark",
        "type": "hookgate.easypark.parking.completed",
        "time": "2025-12-04T12:02:37.123456Z",
        "datacontenttype": "application/json",
        "subject": "parking/4242",
        "data": parking().document,
    }


def test_envelope_omits_an_unknown_subject() -> None:
    assert "subject" not in cloudevent(parking(subject=None), PROVIDERS["easypark"])


def test_encoding_keeps_decimals_exact_as_strings() -> None:
    body = encode(cloudevent(parking(), PROVIDERS["easypark"]))
    decoded = msgspec.json.decode(body)
    assert decoded["data"]["price"] == "12.50"
    assert decoded["time"].endswith("Z")
    assert datetime.fromisoformat(decoded["time"]) == parking().received_at


# -- router ------------------------------------------------------------------------------


def test_a_destination_without_filter_takes_everything() -> None:
    router = Router([destination("all")], PROVIDERS)
    assert router.destinations_for(parking()) == ["all"]
    assert router.destinations_for(parking(provider="ampeco", source="ampeco")) == ["all"]


def test_providers_and_sources_filter() -> None:
    router = Router(
        [
            destination("parking", providers=["easypark"]),
            destination("charging", providers=["ampeco", "zaptec"]),
            destination("one-source", filter={"sources": ["easypark-key"]}),
        ],
        PROVIDERS,
    )
    assert router.destinations_for(parking()) == ["parking"]
    assert router.destinations_for(parking(source="easypark-key")) == ["parking", "one-source"]


@pytest.mark.parametrize(
    ("pattern", "matches"),
    [
        ("hookgate.easypark.parking.completed", True),
        ("parking.completed", True),
        ("hookgate.easypark.*", True),
        ("parking.*", True),
        ("hookgate.*", True),
        ("*", True),
        ("hookgate.ampeco.*", False),
        ("parking.started", False),
        ("parking", False),
    ],
)
def test_event_types_match_cloudevents_or_provider_names_with_prefixes(
    pattern: str, matches: bool
) -> None:
    router = Router([destination("d", event_types=[pattern])], PROVIDERS)
    assert router.destinations_for(parking()) == (["d"] if matches else [])


def test_where_conditions_look_into_the_envelope() -> None:
    router = Router(
        [
            destination("nok", where={"data.currency": "NOK"}),
            destination("nok-or-sek", filter={"where": {"data.currency": ["SEK", "NOK"]}}),
            destination("eur", where={"data.currency": "EUR"}),
            destination("zone", where={"data.zone.code": "OSL-1", "subject": "parking/4242"}),
            destination("tag", where={"data.zone.tags.0": "airport"}),
            destination("amount", where={"data.price": 12.5, "data.parkingId": "4242"}),
            destination("missing", where={"data.nothing.here": "x"}),
            destination("type", where={"type": "hookgate.easypark.parking.completed"}),
        ],
        PROVIDERS,
    )
    assert router.destinations_for(parking()) == [
        "nok",
        "nok-or-sek",
        "zone",
        "tag",
        "amount",
        "type",
    ]


def test_where_does_not_confuse_booleans_with_numbers() -> None:
    event = parking(document={"consistent": True, "count": 1})
    router = Router(
        [
            destination("true", where={"data.consistent": True}),
            destination("one", where={"data.consistent": 1}),
            destination("count", where={"data.count": True}),
        ],
        PROVIDERS,
    )
    assert router.destinations_for(event) == ["true"]


def test_a_unicode_digit_in_a_where_path_is_no_list_index() -> None:
    # str.isdigit() holds for superscripts, which int() refuses: the path just misses.
    event = parking(document={"items": [7, 8]})
    router = Router(
        [
            destination("first", where={"data.items.0": 7}),
            destination("superscript", where={"data.items.\u00b9": 8}),
            destination("arabic", where={"data.items.\u0661": 8}),
        ],
        PROVIDERS,
    )
    assert router.destinations_for(event) == ["first"]


def test_every_filter_part_must_match() -> None:
    router = Router(
        [
            destination(
                "d",
                providers=["easypark"],
                event_types=["parking.*"],
                where={"data.currency": "SEK"},
            )
        ],
        PROVIDERS,
    )
    assert router.destinations_for(parking()) == []
    assert router.destinations_for(parking(document={"currency": "SEK"})) == ["d"]


# -- signing -----------------------------------------------------------------------------


def test_signature_verifies_with_the_standardwebhooks_library() -> None:
    body = encode(cloudevent(parking(), PROVIDERS["easypark"]))
    headers = signature_headers(SECRET, "01JF0000000000000000000001", int(time.time()), body)
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert Webhook(SECRET).verify(body, headers)["id"] == "01JF0000000000000000000001"


def test_signature_matches_the_library_byte_for_byte() -> None:
    stamp = 1_733_313_757
    expected = Webhook(SECRET).sign("msg_1", datetime.fromtimestamp(stamp, UTC), '{"a":1}')
    assert sign(SECRET, "msg_1", stamp, b'{"a":1}') == expected


def test_a_changed_body_or_wrong_secret_fails_verification() -> None:
    body = b'{"a":1}'
    headers = signature_headers(SECRET, "msg_1", int(time.time()), body)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(b'{"a":2}', headers)
    other = "whsec_" + base64.b64encode(b"another secret").decode()
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(body, headers)


def test_without_a_secret_only_id_and_timestamp_are_sent() -> None:
    assert set(signature_headers(None, "m", 1, b"")) == {"webhook-id", "webhook-timestamp"}
