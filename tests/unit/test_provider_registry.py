"""The provider registry: the one list of providers everything outside providers/ asks."""

from __future__ import annotations

import tomllib
import typing
from pathlib import Path

import pytest

from hookgate.config import SourceConfig, parse_config
from hookgate.providers import REGISTRY, deciding_sources, provider_of
from support.gateway import base_config


def test_every_configurable_provider_has_a_receiver_and_no_other() -> None:
    tags = {t.__struct_config__.tag for t in typing.get_args(SourceConfig)}
    assert set(REGISTRY) == tags


@pytest.mark.parametrize("name", list(REGISTRY))
def test_each_init_table_is_a_valid_source_of_its_provider(name: str) -> None:
    cls = REGISTRY[name]
    table = tomllib.loads(cls.starter("s3cret-value"))["sources"][0]
    config = parse_config({"sources": [table]}, env={})
    [source] = config.sources
    assert source.provider == name and provider_of(source) is cls
    assert "s3cret-value" in source.credentials()
    assert f"/hooks/{name}" in cls.portal("https://gw.example.net", "s3cret-value", "h.toml")
    assert cls.secret_issuer and cls.resend


def test_deciding_sources_are_those_whose_provider_authorizes_starts(tmp_path: Path) -> None:
    config = parse_config(base_config(tmp_path / "r.db"), env={})
    expected = [
        s.name for s in config.sources if "authorize" in REGISTRY[s.provider].routes.values()
    ]
    assert deciding_sources(config) == expected
    assert expected == [s.name for s in config.sources if s.provider == "zaptec"]
