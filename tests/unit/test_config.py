"""Configuration: validation errors name the key, `${ENV}` interpolation, file lookup."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from conftest import AMPECO_NEW, base_config
from hookgate.config import (
    AmpecoSource,
    Config,
    ConfigError,
    EasyParkSource,
    ZaptecSource,
    ZtlmentSource,
    find_config,
    load_config,
    parse_config,
)

DB = Path("/var/lib/hookgate/hookgate.db")


def data(**changes: Any) -> dict[str, Any]:
    return copy.deepcopy(base_config(DB, **changes))


def error_of(document: dict[str, Any], env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(document, env={} if env is None else env)
    return str(info.value)


# --------------------------------------------------------------------------- valid


def test_the_test_configuration_is_valid() -> None:
    config = parse_config(data(), env={})
    assert isinstance(config, Config)
    assert config.server.max_body_bytes == 65536
    kinds = {s.name: type(s) for s in config.sources}
    assert kinds["zaptec"] is ZaptecSource
    assert kinds["ampeco"] is AmpecoSource
    assert kinds["easypark-key"] is EasyParkSource
    assert kinds["ztlment"] is ZtlmentSource
    assert config.source("easypark-q").on_invalid == "quarantine"  # type: ignore[union-attr]
    assert config.source("nope") is None


def test_defaults_for_an_empty_file() -> None:
    config = parse_config({}, env={})
    assert config.server.max_body_bytes == 1024 * 1024
    assert config.sources == []
    assert config.storage.url.startswith("sqlite:///")


# --------------------------------------------------------------------------- errors name the key


def test_bad_port_names_server_port() -> None:
    bad = data()
    bad["server"]["port"] = 70000
    assert error_of(bad).startswith("server.port:")
    bad["server"]["port"] = "8080"
    assert error_of(bad).startswith("server.port:")


def test_unknown_key_in_a_source_names_the_source_and_the_key() -> None:
    bad = data()
    bad["sources"][1]["colour"] = "blue"
    message = error_of(bad)
    assert message.startswith("sources[1]")
    assert "colour" in message


def test_unknown_top_level_key_is_named() -> None:
    bad = data()
    bad["sever"] = {"port": 8000}
    assert "sever" in error_of(bad)


def test_unknown_provider_names_sources_index_provider() -> None:
    bad = data()
    bad["sources"][2]["provider"] = "stripe"
    message = error_of(bad)
    assert message.startswith("sources[2].provider")
    assert "stripe" in message


def test_bad_secret_type_names_the_list_item() -> None:
    bad = data()
    bad["sources"][3]["secrets"] = ["ok", 42]
    assert error_of(bad).startswith("sources[3].secrets[1]")


def test_bad_source_name_is_named() -> None:
    bad = data()
    bad["sources"][0]["name"] = "Zaptec Main"
    assert error_of(bad).startswith("sources[0].name")


def test_duplicate_source_names_name_the_source_key() -> None:
    bad = data()
    bad["sources"][4]["name"] = "zaptec"  # sources[0] is already called zaptec
    message = error_of(bad)
    assert "'zaptec'" in message
    assert "sources[4]" in message


def test_bad_storage_url_names_storage_url() -> None:
    bad = data()
    bad["storage"]["url"] = "mysql://db/hookgate"
    message = error_of(bad)
    assert message.startswith("storage")
    assert "url" in message
    assert "sqlite:///" in message


def test_body_limit_below_minimum_is_refused() -> None:
    bad = data()
    bad["server"]["max_body_bytes"] = 10
    assert error_of(bad).startswith("server.max_body_bytes")


# --------------------------------------------------------------------------- interpolation


def test_variable_is_interpolated() -> None:
    doc = data()
    doc["sources"][3]["secrets"] = ["${AMPECO_TOKEN}", "static"]
    config = parse_config(doc, env={"AMPECO_TOKEN": AMPECO_NEW})
    source = config.source("ampeco")
    assert isinstance(source, AmpecoSource)
    assert source.secrets == [AMPECO_NEW, "static"]


def test_variable_inside_a_longer_string() -> None:
    doc = data()
    doc["storage"]["url"] = "sqlite:///${STATE_DIR}/hookgate.db"
    config = parse_config(doc, env={"STATE_DIR": "/srv/state"})
    assert config.storage.url == "sqlite:////srv/state/hookgate.db"


def test_default_is_used_when_the_variable_is_unset() -> None:
    doc = data()
    doc["sources"][0]["password"] = "${ZAPTEC_PASSWORD:-fallback:pass}"
    source = parse_config(doc, env={}).source("zaptec")
    assert isinstance(source, ZaptecSource)
    assert source.password == "fallback:pass"
    source = parse_config(doc, env={"ZAPTEC_PASSWORD": "from-env"}).source("zaptec")
    assert isinstance(source, ZaptecSource)
    assert source.password == "from-env"


def test_empty_default_is_allowed() -> None:
    doc = data()
    doc["admin"]["tokens"] = ["${ADMIN_TOKEN:-}"]
    assert parse_config(doc, env={}).admin.tokens == [""]


def test_double_dollar_is_a_literal_dollar() -> None:
    doc = data()
    doc["sources"][0]["password"] = "pa$$word-$${NOT_A_VAR}"
    source = parse_config(doc, env={"NOT_A_VAR": "x"}).source("zaptec")
    assert isinstance(source, ZaptecSource)
    assert source.password == "pa$word-${NOT_A_VAR}"


def test_unset_variable_names_the_key_and_the_variable() -> None:
    doc = data()
    doc["sources"][3]["secrets"] = ["${AMPECO_TOKEN}"]
    message = error_of(doc)
    assert "sources[3].secrets[0]" in message
    assert "AMPECO_TOKEN" in message


def test_unset_variable_in_a_table_names_the_dotted_key() -> None:
    doc = data()
    doc["storage"]["url"] = "${DATABASE_URL}"
    message = error_of(doc)
    assert "storage.url" in message
    assert "DATABASE_URL" in message


def test_parse_config_reads_the_process_environment_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HG_TEST_ADMIN", "from-process-env")
    doc = data()
    doc["admin"]["tokens"] = ["${HG_TEST_ADMIN}"]
    assert parse_config(doc).admin.tokens == ["from-process-env"]


# --------------------------------------------------------------------------- files


TOML = """
[server]
port = 8088

[storage]
url = "sqlite:///${HG_TEST_DIR}/hookgate.db"

[[sources]]
name = "ampeco"
provider = "ampeco"
secrets = ["${HG_TEST_AMPECO}"]
"""


def test_load_config_reads_and_interpolates_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = tmp_path / "gateway.toml"
    file.write_text(TOML, encoding="utf-8")
    monkeypatch.setenv("HG_TEST_DIR", "/srv")
    monkeypatch.setenv("HG_TEST_AMPECO", "tok")
    config = load_config(file)
    assert config.server.port == 8088
    assert config.storage.url == "sqlite:////srv/hookgate.db"
    source = config.source("ampeco")
    assert isinstance(source, AmpecoSource)
    assert source.secrets == ["tok"]


def test_load_config_errors_name_the_file_and_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = tmp_path / "gateway.toml"
    file.write_text(TOML, encoding="utf-8")
    monkeypatch.delenv("HG_TEST_DIR", raising=False)
    monkeypatch.setenv("HG_TEST_AMPECO", "tok")
    with pytest.raises(ConfigError) as info:
        load_config(file)
    assert str(file) in str(info.value)
    assert "storage.url" in str(info.value)
    assert "HG_TEST_DIR" in str(info.value)


def test_load_config_with_invalid_toml_names_the_file(tmp_path: Path) -> None:
    file = tmp_path / "broken.toml"
    file.write_text("[server\nport = 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"broken\.toml"):
        load_config(file)


def test_missing_file_says_to_run_hookgate_init(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HOOKGATE_CONFIG", raising=False)
    with pytest.raises(ConfigError) as info:
        load_config()
    assert "hookgate init" in str(info.value)
    assert "hookgate.toml" in str(info.value)
    with pytest.raises(ConfigError, match="hookgate init"):
        load_config(tmp_path / "elsewhere.toml")


def test_find_config_prefers_the_explicit_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hookgate.toml").write_text("", encoding="utf-8")
    monkeypatch.setenv("HOOKGATE_CONFIG", str(tmp_path / "from-env.toml"))
    assert find_config(tmp_path / "explicit.toml") == tmp_path / "explicit.toml"
    assert find_config(str(tmp_path / "explicit.toml")) == tmp_path / "explicit.toml"


def test_find_config_uses_the_environment_variable_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hookgate.toml").write_text("", encoding="utf-8")
    monkeypatch.setenv("HOOKGATE_CONFIG", str(tmp_path / "from-env.toml"))
    assert find_config() == tmp_path / "from-env.toml"
    assert find_config(None) == tmp_path / "from-env.toml"


def test_find_config_falls_back_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HOOKGATE_CONFIG", raising=False)
    found = find_config()
    assert found.resolve() == (tmp_path / "hookgate.toml").resolve()
    monkeypatch.setenv("HOOKGATE_CONFIG", "")
    assert find_config().resolve() == (tmp_path / "hookgate.toml").resolve()


def test_load_config_follows_the_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hookgate.toml").write_text("[server]\nport = 1111\n", encoding="utf-8")
    other = tmp_path / "other.toml"
    other.write_text("[server]\nport = 2222\n", encoding="utf-8")
    monkeypatch.delenv("HOOKGATE_CONFIG", raising=False)
    assert load_config().server.port == 1111
    monkeypatch.setenv("HOOKGATE_CONFIG", str(other))
    assert load_config().server.port == 2222
    assert load_config(tmp_path / "hookgate.toml").server.port == 1111
