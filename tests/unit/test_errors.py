"""One error root, mapped once per edge: each kind of error gets its HTTP status and
problem type from one table and its command-line sentence from another, and a clash or a
broken limit is never mistaken for storage being down."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from click.testing import CliRunner

from hookgate.cli import main
from hookgate.cli.common import error_message
from hookgate.config import ConfigError
from hookgate.domain.errors import (
    Abandoned,
    AlreadyExists,
    BadCursor,
    Conflict,
    HookgateError,
    Invalid,
    LimitReached,
    NotFound,
    Overloaded,
    SchemaOutdated,
    StoreError,
    Unavailable,
    Unprocessable,
)
from hookgate.ingress.problems import error_answer
from hookgate.ops.replay import BadReplay
from hookgate.providers.base import Reject
from support.gateway import ADMIN_TOKEN, base_config


@pytest.mark.parametrize(
    ("error", "status", "code", "retry_after"),
    [
        (StoreError("disk full"), 503, "storage-unavailable", "7"),
        (SchemaOutdated("run hookgate migrate"), 503, "storage-unavailable", "7"),
        (Overloaded(900, 800, 3), 503, "overloaded", "3"),
        (Unavailable("starting"), 503, "unavailable", "7"),
        (NotFound("no event with id x"), 404, "not-found", None),
        (AlreadyExists("token T exists"), 409, "already-exists", None),
        (LimitReached("token T energy budget"), 409, "limit-reached", None),
        (Abandoned("the fallback answered first"), 409, "abandoned", None),
        (Conflict("event x is processed", code="not-quarantined"), 409, "not-quarantined", None),
        (Unprocessable("signature does not match"), 422, "still-invalid", None),
        (BadCursor("cursor is not valid"), 400, "bad-cursor", None),
        (BadReplay("status", "status must be one of ..."), 400, "bad-parameter", None),
        (Invalid("limit must be positive"), 400, "invalid", None),
        (HookgateError("unclassified"), 500, "error", None),
    ],
)
def test_each_kind_of_error_has_one_http_answer(
    error: HookgateError, status: int, code: str, retry_after: str | None
) -> None:
    got, body, headers = error_answer(error, retry_after=7)
    problem = msgspec.json.decode(body)
    assert (got, problem["status"], problem["type"]) == (
        status,
        status,
        f"urn:hookgate:problem:{code}",
    )
    assert problem["detail"] == error.detail
    assert headers.get("Retry-After") == retry_after


def test_an_edge_may_say_less_than_the_error() -> None:
    _, body, _ = error_answer(StoreError("could not open /var/db"), retry_after=5, detail="retry")
    assert msgspec.json.decode(body)["detail"] == "retry"


@pytest.mark.parametrize("error", [AlreadyExists("x"), LimitReached("x"), Abandoned("x")])
def test_a_clash_is_a_conflict_not_a_storage_failure(error: HookgateError) -> None:
    assert isinstance(error, Conflict)
    assert not isinstance(error, StoreError | Unavailable)


def test_every_refusal_and_input_error_shares_the_root() -> None:
    assert issubclass(ConfigError, Invalid)
    assert issubclass(Reject, HookgateError)
    assert issubclass(Invalid, ValueError)  # input checks stay catchable as ValueError


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (ConfigError("storage: url is required"), "storage: url is required"),
        (SchemaOutdated("run `hookgate migrate` first"), "run `hookgate migrate` first"),
        (StoreError("cannot connect"), "storage: cannot connect"),
        (Overloaded(9, 8, 1), "storage: 9 writes queued (limit 8 for this kind of write)"),
        (NotFound("no event with id x"), "not-found: no event with id x"),
        (Conflict("already re-run", code="already-rerun"), "already-rerun: already re-run"),
        (
            LimitReached("group G has 2 active sessions"),
            "limit-reached: group G has 2 active sessions",
        ),
    ],
)
def test_each_kind_of_error_has_one_cli_message(error: HookgateError, message: str) -> None:
    assert error_message(error) == message


CLI_CONFIG = """\
[storage]
url = "sqlite:///hookgate.db"

[[sources]]
name = "zaptec"
provider = "zaptec"
password = "pw"
"""


def test_the_cli_names_the_case_of_an_error_from_below(tmp_path: Path) -> None:
    config = tmp_path / "hookgate.toml"
    config.write_text(CLI_CONFIG, encoding="utf-8")
    runner = CliRunner()
    assert runner.invoke(main, ["migrate", "--config", str(config)]).exit_code == 0
    result = runner.invoke(main, ["events", "reprocess", "NOPE", "--config", str(config)])
    assert result.exit_code == 1
    assert result.output.strip() == "Error: not-found: no event with id NOPE"
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_the_admin_api_answers_errors_from_below_by_kind(tmp_path: Path, make_gateway: Any) -> None:
    gateway = make_gateway(base_config(tmp_path / "hookgate.db"))
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with httpx.Client(base_url=gateway.url, headers=headers) as admin:
        missing = admin.post("/api/v1/events/NOPE/reprocess")
        assert missing.status_code == 404, missing.text
        assert missing.headers["content-type"] == "application/problem+json"
        assert missing.json()["type"] == "urn:hookgate:problem:not-found"
        assert missing.json()["detail"] == "no event with id NOPE"
        cursor = admin.get("/api/v1/events", params={"cursor": "not-one-of-ours"})
        assert cursor.status_code == 400
        assert cursor.json()["type"] == "urn:hookgate:problem:bad-cursor"
