"""`hookgate tokens export --ocpp 1.6|2.0.1 [--since VERSION]`: SendLocalList payloads,
Full and Differential, valid against the official OCPP JSON schemas the `ocpp` package
ships, on both backends."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from support.e2e import migrate, run_cli, write_config

pytestmark = [pytest.mark.e2e, pytest.mark.backends("sqlite", "postgresql")]

AUTHORIZATION = {
    "groups": [{"id": "fleet"}],
    "tokens": [
        {"uid": "TAG-1", "group_id": "fleet", "valid_until": "2099-01-01T00:00:00Z"},
        {"uid": "TAG-OLD", "valid_until": "2020-01-01T00:00:00Z"},
        {"uid": "APP-7", "type": "APP_USER"},
        {"uid": "CLOUD-ONLY", "whitelist": "NEVER"},
        {"uid": "A-VERY-LONG-TOKEN-UID-OF-30-CHARS"},
    ],
}
SCHEMAS = {"1.6": ("v16", "SendLocalList.json"), "2.0.1": ("v201", "SendLocalListRequest.json")}


def schema(version: str) -> dict[str, Any]:
    folder, name = SCHEMAS[version]
    text = resources.files("ocpp").joinpath(folder, "schemas", name).read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def export(config: Path, version: str, *extra: str) -> tuple[dict[str, Any], str]:
    result = run_cli("tokens", "export", "--ocpp", version, *extra, "--config", str(config))
    payload: dict[str, Any] = json.loads(result.stdout)
    validator = (
        jsonschema.Draft202012Validator if version == "2.0.1" else jsonschema.Draft4Validator
    )
    jsonschema.validate(payload, schema(version), cls=validator)
    return payload, result.stderr


def cli(config: Path, *args: str) -> None:
    run_cli(*args, "--config", str(config))


@pytest.fixture
def config(storage_url: str, tmp_path: Path) -> Path:
    path = write_config(tmp_path, url=storage_url, authorization=AUTHORIZATION)
    migrate(path)
    # The configuration's rules reach the store when a server starts (or `tokens add`
    # writes): add a stored token so the change log has entries to version the list by.
    cli(path, "tokens", "add", "api-1", "--group", "fleet")
    return path


def test_full_lists_are_valid_and_say_what_a_station_may_do(config: Path) -> None:
    v16, warned = export(config, "1.6")
    assert v16["updateType"] == "Full" and v16["listVersion"] >= 1
    entries = {e["idTag"]: e.get("idTagInfo") for e in v16["localAuthorizationList"]}
    assert "CLOUD-ONLY" not in entries  # whitelist NEVER: never kept on a station
    assert "A-VERY-LONG-TOKEN-UID-OF-30-CHARS" not in entries and "too long" in warned
    assert entries["TAG-1"] == {
        "status": "Accepted",
        "expiryDate": "2099-01-01T00:00:00Z",
        "parentIdTag": "fleet",
    }
    assert entries["TAG-OLD"]["status"] == "Expired"
    assert entries["API-1"] == {"status": "Accepted", "parentIdTag": "fleet"}

    v201, _ = export(config, "2.0.1")
    assert v201["updateType"] == "Full" and v201["versionNumber"] == v16["listVersion"]
    by_id = {e["idToken"]["idToken"]: e for e in v201["localAuthorizationList"]}
    assert "A-VERY-LONG-TOKEN-UID-OF-30-CHARS" in by_id  # 36 characters fit in 2.0.1
    assert by_id["TAG-1"]["idToken"]["type"] == "ISO14443"
    assert by_id["APP-7"]["idToken"]["type"] == "Central"
    assert by_id["TAG-1"]["idTokenInfo"]["groupIdToken"] == {"idToken": "fleet", "type": "Central"}


def test_differential_lists_carry_the_changes_since_a_version(config: Path) -> None:
    full, _ = export(config, "1.6")
    version = full["listVersion"]
    unchanged, _ = export(config, "1.6", "--since", str(version))
    assert unchanged == {
        "listVersion": version,
        "updateType": "Differential",
        "localAuthorizationList": [],
    }
    empty_201, _ = export(config, "2.0.1", "--since", str(version))
    assert empty_201 == {"versionNumber": version, "updateType": "Differential"}

    cli(config, "tokens", "add", "api-2")
    cli(config, "tokens", "block", "api-1")
    cli(config, "tokens", "add", "api-3")
    cli(config, "tokens", "remove", "api-3")
    diff, _ = export(config, "1.6", "--since", str(version))
    assert diff["updateType"] == "Differential" and diff["listVersion"] > version
    assert diff["localAuthorizationList"] == [
        {"idTag": "API-1", "idTagInfo": {"status": "Blocked", "parentIdTag": "fleet"}},
        {"idTag": "API-2", "idTagInfo": {"status": "Accepted"}},
        {"idTag": "API-3"},  # deleted: removed from the station's list
    ]
    diff_201, _ = export(config, "2.0.1", "--since", str(version))
    assert [e.get("idTokenInfo", {}).get("status") for e in diff_201["localAuthorizationList"]] == [
        "Blocked",
        "Accepted",
        None,
    ]

    future = run_cli(
        "tokens",
        "export",
        "--ocpp",
        "1.6",
        "--since",
        "999999",
        "--config",
        str(config),
        check=False,
    )
    assert future.returncode == 1 and "newer than the current list version" in future.stderr
