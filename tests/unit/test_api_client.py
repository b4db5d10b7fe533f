"""A client generated from the published document by a standard generator
(openapi-python-client) works against the live gateway: it lists events and blocks a
token, typed end to end."""

from __future__ import annotations

import base64
import importlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.gateway import ADMIN_TOKEN, EASYPARK_PASSWORD, EASYPARK_USER, Running

pytestmark = pytest.mark.backends("sqlite")

FIXTURES = Path(__file__).parents[1] / "contract/fixtures"
PACKAGE = "hookgate_admin_client"


@pytest.fixture
def client_package(gateway: Running, tmp_path: Path) -> Iterator[Any]:
    """The client package generated into a temporary directory and imported."""
    document = tmp_path / "openapi.json"
    document.write_bytes(httpx.get(f"{gateway.url}/api/v1/openapi.json").content)
    generated = subprocess.run(
        [
            str(Path(sys.executable).parent / "openapi-python-client"),
            "generate",
            "--path",
            str(document),
            "--output-path",
            str(tmp_path / PACKAGE),
            "--meta",
            "none",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (tmp_path / PACKAGE / "client.py").exists(), generated.stdout + generated.stderr
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(tmp_path))
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def test_generated_client_lists_events_and_blocks_a_token(
    gateway: Running, client_package: Any
) -> None:
    basic = base64.b64encode(f"{EASYPARK_USER}:{EASYPARK_PASSWORD}".encode()).decode()
    stored = httpx.post(
        f"{gateway.url}/hooks/easypark",
        content=(FIXTURES / "easypark/current.json").read_bytes(),
        headers={"Content-Type": "application/json", "Authorization": f"Basic {basic}"},
    )
    assert stored.status_code == 200, stored.text

    api = importlib.import_module(f"{PACKAGE}.api.events.list_events")
    create = importlib.import_module(f"{PACKAGE}.api.rules.create_token")
    block = importlib.import_module(f"{PACKAGE}.api.rules.block_token")
    audit = importlib.import_module(f"{PACKAGE}.api.audit.list_audit")
    models = importlib.import_module(f"{PACKAGE}.models")
    client = client_package.AuthenticatedClient(base_url=gateway.url, token=ADMIN_TOKEN)

    page = api.sync(client=client, source="easypark", limit=10)
    assert isinstance(page, models.PageEvent)
    assert [event.source for event in page.items] == ["easypark"]
    assert page.items[0].type_ == "parking.completed"
    refused = api.sync_detailed(client=client, status=models.ListEventsStatus.QUARANTINED)
    assert refused.status_code == 200 and refused.parsed.items == []

    created = create.sync(client=client, body=models.Token(uid="04c0ffee"))
    assert isinstance(created, models.Token) and created.uid == "04C0FFEE"
    blocked = block.sync(key="04C0FFEE", client=client)
    assert isinstance(blocked, models.Token)
    assert blocked.status == models.TokenStatus.BLOCKED
    missing = block.sync(key="NOBODY", client=client)
    assert isinstance(missing, models.Problem) and missing.status == 404

    entries = audit.sync(client=client, action="blockToken")
    assert [(e.actor, e.target, e.outcome.value) for e in entries.items] == [
        ("admin", "NOBODY", "refused"),
        ("admin", "04C0FFEE", "ok"),
    ]
