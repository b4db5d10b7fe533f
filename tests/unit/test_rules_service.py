"""The rules service and the bootstrap graph without a server or a terminal: the invariants
every writer keeps, on both backends, and a command's read-only view of the engine."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest

from hookgate.bootstrap import Graph, bootstrap
from hookgate.config import Config, parse_config
from hookgate.domain.errors import Conflict, NotFound, Unprocessable
from hookgate.domain.rules import Token
from hookgate.services.rules import (
    BUDGETS,
    GROUPS,
    RULES,
    TOKENS,
    Kind,
    ManagedByConfig,
    validate,
)
from support.gateway import base_config

pytestmark = pytest.mark.backends("sqlite", "postgresql")

FILE_RULES: dict[str, Any] = {
    "groups": [{"id": "FROM-FILE"}],
    "tokens": [{"uid": "CFG1", "group_id": "FROM-FILE"}],
    "budgets": [
        {
            "id": "cfg1-day",
            "subject": "token",
            "subject_id": "CFG1",
            "metric": "kwh",
            "period": "day",
            "limit": "20",
        }
    ],
}


def config_of(tmp_path: Path, storage_url: str) -> Config:
    config = parse_config(
        base_config(tmp_path / "rules.db", storage_url, authorization=FILE_RULES), env={}
    )
    return msgspec.structs.replace(
        config, storage=msgspec.structs.replace(config.storage, auto_migrate=True)
    )


@pytest.fixture
async def graph(tmp_path: Path, storage_url: str) -> AsyncIterator[Graph]:
    """A command's graph: storage open, no server has written the file's rules yet."""
    built = bootstrap(config_of(tmp_path, storage_url))
    await built.open()
    yield built
    await built.close()


async def test_the_files_entities_are_read_only_before_any_server_wrote_them(
    graph: Graph,
) -> None:
    assert await graph.store.auth_get("token", "CFG1") is None
    listed = await graph.rules.get(TOKENS, "CFG1")
    assert listed.managed_by == "config"
    with pytest.raises(ManagedByConfig) as refused:
        await graph.rules.set_status(TOKENS, "CFG1", "blocked")
    assert refused.value.code == "managed-by-config" and refused.value.key == "CFG1"
    with pytest.raises(Conflict):
        await graph.rules.save(GROUPS, validate(GROUPS, {"id": "FROM-FILE"}), replace=True)
    # The file's group counts as existing: a token may join it.
    await graph.rules.create(TOKENS, validate(TOKENS, {"uid": "tag-1", "group_id": "FROM-FILE"}))
    assert [e.managed_by for e in await graph.rules.everything(TOKENS)] == ["config", "api"]


async def test_references_must_exist_and_name_their_field(graph: Graph) -> None:
    cases: list[tuple[Kind, dict[str, Any], str, str | None]] = [
        (TOKENS, {"uid": "T", "group_id": "nope"}, "unknown-group", "group_id"),
        (RULES, {"charger_id": "CH", "mode": "reserved", "group_id": "x"}, "unknown-group", None),
        (
            BUDGETS,
            {
                "id": "b",
                "subject": "group",
                "subject_id": "ghost",
                "metric": "kwh",
                "period": "day",
                "limit": "1",
            },
            "unknown-subject",
            "subject_id",
        ),
        (TOKENS, {"uid": "T", "scope": {"sources": ["ampeco"]}}, "unknown-source", None),
    ]
    for spec, doc, code, field in cases:
        with pytest.raises(Unprocessable) as refused:
            await graph.rules.create(spec, validate(spec, doc))
        assert refused.value.code == code
        if field:
            assert refused.value.extra["field"] == field


async def test_a_group_in_use_stays_and_budgets_go_with_their_owner(graph: Graph) -> None:
    rules = graph.rules
    await rules.create(GROUPS, validate(GROUPS, {"id": "fleet"}))
    await rules.create(
        RULES, validate(RULES, {"charger_id": "CH", "mode": "reserved", "group_id": "fleet"})
    )
    with pytest.raises(Conflict) as in_use:
        await rules.remove(GROUPS, "fleet")
    assert in_use.value.code == "group-in-use"
    assert in_use.value.extra == {"tokens": 0, "chargers": 1}
    await rules.remove(RULES, "CH")

    token = validate(TOKENS, {"uid": "tag-9", "group_id": "fleet"})
    assert isinstance(token, Token)
    limits: dict[str, Decimal | None] = {"day": Decimal(5), "week": None, "month": Decimal(90)}
    assert await rules.save_token(token, limits, replace=False) == []
    with pytest.raises(Conflict) as taken:
        await rules.save_token(token, limits, replace=False)
    assert taken.value.code == "already-exists"
    # Replacing without the month limit drops that budget.
    assert await rules.save_token(token, {**limits, "month": None}, replace=True) == [
        "token-TAG-9-kwh-month"
    ]
    assert [b.entity.id for b in await rules.budgets_of("token", "TAG-9")] == [  # type: ignore[union-attr]
        "token-TAG-9-kwh-day"
    ]
    assert await rules.remove(TOKENS, "TAG-9") == 1
    assert await rules.budgets_of("token", "TAG-9") == []
    with pytest.raises(NotFound):
        await rules.remove(TOKENS, "TAG-9")
    assert await rules.remove(GROUPS, "fleet") == 0


async def test_a_command_sees_the_engine_a_server_would_hold_and_writes_nothing(
    graph: Graph,
) -> None:
    engine = await graph.load_engine()
    assert "CFG1" in engine.engine.tokens and "FROM-FILE" in engine.engine.groups
    assert await graph.store.auth_get("token", "CFG1") is None
    budget = (await graph.rules.get(BUDGETS, "cfg1-day")).entity
    assert graph.rules.usage(budget)["remaining"] == "20"  # type: ignore[arg-type]


async def test_a_write_is_in_force_in_the_running_engine_before_it_returns(
    tmp_path: Path, storage_url: str
) -> None:
    serving = bootstrap(config_of(tmp_path, storage_url))
    await serving.serve()
    try:
        await serving.rules.create(TOKENS, validate(TOKENS, {"uid": "new-tag"}))
        assert "NEW-TAG" in serving.authorization.engine.tokens
        await serving.rules.set_status(TOKENS, "NEW-TAG", "blocked")
        assert serving.authorization.engine.tokens["NEW-TAG"].status == "blocked"
    finally:
        await serving.close()
        await serving.close()  # closing twice does nothing
