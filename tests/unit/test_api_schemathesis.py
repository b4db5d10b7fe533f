"""The published contract holds against the live gateway: schemathesis generates requests
for every operation of /api/v1/openapi.json (valid ones and invalid ones, bounded per
operation) and checks each answer against the document, on both backends.

Every check runs except `positive_data_acceptance`: that one expects any request the
schema admits to succeed, and some refusals depend on state no schema can express (a
cursor must be one this gateway issued, a body's id must equal the path's, a group must
exist before a token names it). Those refusals are documented answers (400, 404, 409, 422)
and `status_code_conformance` still checks them.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hookgate.config import parse_config
from support.gateway import (
    ADMIN_TOKEN,
    EASYPARK_PASSWORD,
    EASYPARK_USER,
    Running,
    base_config,
    serve,
)
from support.polling import until
from support.storage import fresh_storage
from support.views import seed

pytestmark = pytest.mark.backends("sqlite", "postgresql")

FIXTURES = Path(__file__).parents[1] / "contract/fixtures"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
# Examples per operation and phase: enough to reach every parameter and error path of
# the 50-odd operations while the module stays within about a minute per backend.
EXAMPLES = 12


@pytest.fixture(scope="module")
def live(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """A gateway with a destination and data in every list: accepted and refused calls,
    a processed parking event, a charging session and a charge point."""
    directory = tmp_path_factory.mktemp("schemathesis")
    destinations = [{"name": "erp", "kind": "http", "url": "http://127.0.0.1:9/hooks"}]
    with fresh_storage(backend, directory) as url:
        config = parse_config(
            base_config(directory / "hookgate.db", url, destinations=destinations), env={}
        )
        for running in serve(config):
            basic = base64.b64encode(f"{EASYPARK_USER}:{EASYPARK_PASSWORD}".encode()).decode()
            body = (FIXTURES / "easypark/current.json").read_bytes()
            for source, credentials in (("easypark", basic), ("easypark", "bad")):
                httpx.post(
                    f"{running.url}/hooks/{source}",
                    content=body,
                    headers={
                        "Content-Type": "application/json",
                        "Authorization": f"Basic {credentials}",
                    },
                )
            seed(running.storage_url, "charging_sessions", source="ampeco", session_key="s-1")
            seed(running.storage_url, "charge_points", source="ampeco", charge_point_id="cp-1")
            with httpx.Client(base_url=running.url, headers=AUTH) as admin:
                until(
                    lambda: admin.get("/api/v1/parking-transactions").json()["items"],
                    "the parking event to be processed",
                )
                admin.post("/api/v1/groups", json={"id": "fleet"})
                admin.post("/api/v1/tokens", json={"uid": "04AA", "group_id": "fleet"})
            yield running


def test_every_operation_keeps_the_contract(live: Running, tmp_path: Path) -> None:
    """schemathesis's own runner, as an operator would run it: every phase (examples,
    coverage of each parameter's edges, fuzzing, stateful sequences through the links it
    infers), a fixed seed so a failure reproduces."""
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "st"),
            "run",
            f"{live.url}/api/v1/openapi.json",
            "--header",
            f"Authorization: Bearer {ADMIN_TOKEN}",
            "--max-examples",
            str(EXAMPLES),
            "--exclude-checks",
            "positive_data_acceptance",
            "--workers",
            "1",
            "--seed",
            "20251204",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        check=False,
    )
    report = result.stdout[-20000:] + result.stderr[-4000:]
    assert result.returncode == 0, report
    tested = re.search(r"Tested: (\d+)", report)
    assert tested is not None and int(tested.group(1)) >= 50, report


def test_lists_hold_data_the_checks_saw(live: Running) -> None:
    """The conformance checks above ran against lists with items, not only empty ones."""
    with httpx.Client(base_url=live.url, headers=AUTH) as admin:
        for path in (
            "events",
            "rejections",
            "parking-transactions",
            "charging-sessions",
            "charge-points",
            "deliveries",
            "tokens",
            "groups",
            "destinations",
        ):
            assert admin.get(f"/api/v1/{path}").json()["items"], path
    assert json.loads(httpx.get(f"{live.url}/api/v1/openapi.json").text)["openapi"] == "3.1.0"
