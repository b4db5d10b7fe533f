"""The AMPECO catalog is generated from the OpenAPI copy in the repository, and is current."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import msgspec
import pytest

from hookgate.providers import ampeco_catalog, ampeco_gen

pytestmark = pytest.mark.backends("sqlite", "postgresql")

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "ampeco"


def test_the_catalog_is_what_the_generator_makes_of_the_openapi_copy() -> None:
    generated = ampeco_gen.generate()
    current = Path(ampeco_catalog.__file__).read_text(encoding="utf-8")
    assert generated == current, "run `make ampeco-catalog` and commit the result"


def test_the_openapi_copy_keeps_its_licence_beside_it() -> None:
    folder = ampeco_gen.SOURCE.parent
    assert "MIT License" in (folder / "LICENSE.txt").read_text(encoding="utf-8")
    info = json.loads(ampeco_gen.SOURCE.read_text(encoding="utf-8"))["info"]
    assert ampeco_gen.SOURCE.name == f"openapi-{info['version']}.json"


def _load(text: str, monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    module = types.ModuleType("generated_catalog")
    # msgspec resolves the postponed annotations through sys.modules.
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(text, module.__name__, "exec"), module.__dict__)  # noqa: S102
    return module


def test_a_newer_document_is_one_command_away(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A later AMPECO version that makes `meterStop` optional and adds a notification:
    the regenerated catalog accepts the stop without it and knows the new type."""
    document = json.loads(ampeco_gen.SOURCE.read_text(encoding="utf-8"))
    document["info"]["version"] = "3.160.0"
    callbacks = document["paths"]["/public-api/notifications/v2.0"]["post"]["callbacks"]
    ((_, operation),) = callbacks["SessionStartStopNotification"].items()
    schema = operation["post"]["requestBody"]["content"]["application/json"]["schema"]
    schema["required"].remove("meterStop")
    callbacks["vehicle.changed"] = {
        "{$request.body#/callbackUrl}": {
            "post": {
                "requestBody": {
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "notification": {"type": "string"},
                                    "vehicleId": {"type": "integer"},
                                },
                                "required": ["notification", "vehicleId"],
                            }
                        }
                    }
                }
            }
        }
    }
    source = tmp_path / "openapi-3.160.0.json"
    source.write_text(json.dumps(document), encoding="utf-8")
    module = _load(ampeco_gen.generate(source), monkeypatch)

    body = json.loads((FIXTURE / "SessionStartStopNotification.json").read_bytes())
    del body["meterStop"]
    with pytest.raises(msgspec.ValidationError, match="meterStop"):
        msgspec.convert(body, ampeco_catalog.EVENTS["SessionStartStopNotification"])
    event = msgspec.convert(body, module.EVENTS["SessionStartStopNotification"])
    assert event.meterStop is None
    assert "Public API 3.160.0" in module.__doc__
    assert list(module.EVENTS)[-1] == "vehicle.changed"
    new = msgspec.convert(
        {"notification": "vehicle.changed", "vehicleId": 4}, module.EVENTS["vehicle.changed"]
    )
    assert new.vehicleId == 4
