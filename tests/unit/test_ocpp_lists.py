"""The OCPP local list of a set of tokens: statuses, groups, removals and identifier
lengths, each payload valid against the official schema the `ocpp` package ships."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import jsonschema
import pytest

from hookgate.domain.rules import Group, Token
from hookgate.roaming.ocpp import local_list

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SCHEMAS = {"1.6": ("v16", "SendLocalList.json"), "2.0.1": ("v201", "SendLocalListRequest.json")}


def valid(version: str, payload: dict[str, Any]) -> dict[str, Any]:
    folder, name = SCHEMAS[version]
    schema = json.loads(
        resources.files("ocpp").joinpath(folder, "schemas", name).read_text(encoding="utf-8")
    )
    jsonschema.validate(payload, schema)
    return payload


TOKENS = {
    t.uid: t
    for t in (
        Token(uid="LATER", valid_from=datetime(2026, 4, 1, tzinfo=UTC)),
        Token(uid="FROZEN", group_id="blocked-group"),
        Token(uid="LONG-GROUP", group_id="a-group-id-longer-than-twenty"),
        Token(uid="OTHER-KIND", type="OTHER"),
    )
}
GROUPS = {
    "blocked-group": Group(id="blocked-group", status="blocked"),
    "a-group-id-longer-than-twenty": Group(id="a-group-id-longer-than-twenty"),
}


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
def test_statuses_follow_validity_and_groups(version: str) -> None:
    payload = valid(version, local_list(version, 7, TOKENS, GROUPS, NOW).payload)  # type: ignore[arg-type]
    entries = payload["localAuthorizationList"]
    if version == "1.6":
        by_id = {e["idTag"]: e["idTagInfo"] for e in entries}
        assert by_id["LATER"]["status"] == "Invalid"
        assert by_id["FROZEN"] == {"status": "Blocked", "parentIdTag": "blocked-group"}
        # A group id over 20 characters cannot be a parentIdTag: left off, token kept.
        assert by_id["LONG-GROUP"] == {"status": "Accepted"}
        assert payload["listVersion"] == 7
    else:
        by_id = {e["idToken"]["idToken"]: e for e in entries}
        assert by_id["LATER"]["idTokenInfo"]["status"] == "Invalid"
        assert by_id["FROZEN"]["idTokenInfo"]["status"] == "Blocked"
        assert by_id["OTHER-KIND"]["idToken"]["type"] == "Local"
        assert payload["versionNumber"] == 7


def test_a_fresh_store_still_numbers_its_list() -> None:
    payload = valid("1.6", local_list("1.6", 0, {}, {}, NOW).payload)
    assert payload == {"listVersion": 1, "updateType": "Full", "localAuthorizationList": []}
    assert valid("2.0.1", local_list("2.0.1", 0, {}, {}, NOW).payload) == {
        "versionNumber": 1,
        "updateType": "Full",
    }


def test_differential_removes_what_is_gone_or_never_local() -> None:
    tokens = {**TOKENS, "CLOUD": Token(uid="CLOUD", whitelist="NEVER")}
    result = local_list("2.0.1", 9, tokens, GROUPS, NOW, changed={"CLOUD", "GONE", "LATER"})
    payload = valid("2.0.1", result.payload)
    assert [
        (e["idToken"]["idToken"], "idTokenInfo" in e) for e in payload["localAuthorizationList"]
    ] == [
        ("CLOUD", False),
        ("GONE", False),
        ("LATER", True),
    ]
