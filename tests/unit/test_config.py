"""Configuration: validation errors name the key, `${ENV}` interpolation, file lookup."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

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
    read_config,
)
from support.gateway import AMPECO_NEW, base_config

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
    assert message.startswith('sources["zaptec-allow"]')
    assert "colour" in message


def test_unknown_top_level_key_is_named() -> None:
    bad = data()
    bad["sever"] = {"port": 8000}
    assert "sever" in error_of(bad)


def test_unknown_provider_names_sources_index_provider() -> None:
    bad = data()
    bad["sources"][2]["provider"] = "stripe"
    message = error_of(bad)
    assert message.startswith('sources["zaptec-basic"].provider')
    assert "stripe" in message
    assert "ampeco, easypark, zaptec, ztlment" in message


def test_bad_secret_type_names_the_list_item() -> None:
    bad = data()
    bad["sources"][3]["secrets"] = ["ok", 42]
    assert error_of(bad).startswith('sources["ampeco"].secrets[1]')


def test_bad_source_name_is_named() -> None:
    bad = data()
    bad["sources"][0]["name"] = "Zaptec Main"
    message = error_of(bad)
    assert message.startswith('sources["Zaptec Main"].name')
    assert "lowercase letters, digits" in message and "regex" not in message


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
    assert 'sources["ampeco"].secrets[0]' in message
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


# --------------------------------------------------------------------------- messages that help


def test_an_unknown_key_suggests_the_nearest_known_key() -> None:
    bad = data()
    ampeco = bad["sources"][3]
    ampeco["secret"] = ampeco.pop("secrets")
    message = error_of(bad)
    assert message.startswith('sources["ampeco"]: unknown key `secret`')
    assert "did you mean `secrets`?" in message


def test_a_bad_enum_value_lists_the_allowed_values() -> None:
    bad = data()
    bad["sources"][0]["on_error"] = "allow-known"
    message = error_of(bad)
    assert message.startswith('sources["zaptec"].on_error')
    assert "did you mean 'allow_known'?" in message
    assert "allowed: allow, allow_known, deny" in message
    bad = data()
    bad["logging"]["level"] = "loud"
    assert "allowed: debug, error, info, warning" in error_of(bad)


def test_a_missing_provider_lists_the_providers() -> None:
    bad = data()
    del bad["sources"][3]["provider"]
    message = error_of(bad)
    assert "`provider` is required" in message and "ampeco, easypark, zaptec, ztlment" in message


def test_postgres_scheme_is_accepted_as_libpq_does() -> None:
    doc = data()
    doc["storage"]["url"] = "postgres://hookgate@127.0.0.1:5432/hookgate"
    url = parse_config(doc, env={}).storage.url
    assert url == "postgresql://hookgate@127.0.0.1:5432/hookgate"


LINES = """\
[server]
port = 8000

[[sources]]
name = "zaptec"
provider = "zaptec"
password = "x"

[[sources]]
name = "ampeco"
provider = "ampeco"
secret = ["x"]
"""


def test_errors_give_the_line_of_the_key(tmp_path: Path) -> None:
    file = tmp_path / "hookgate.toml"
    file.write_text(LINES, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(file)
    assert str(info.value).startswith(f'{file}:12: sources["ampeco"]: unknown key `secret`')
    file.write_text(LINES.replace('secret = ["x"]', "").replace("port = 8000", "port = -1"))
    with pytest.raises(ConfigError) as info:
        load_config(file)
    assert str(info.value).startswith(f"{file}:2: server.port")
    file.write_text(LINES.replace('secret = ["x"]', 'on_invalid = "drop"'))
    with pytest.raises(ConfigError) as info:
        load_config(file)
    assert str(info.value).startswith(f'{file}:12: sources["ampeco"].on_invalid')


# --------------------------------------------------------------------------- paths


def test_a_relative_sqlite_path_is_relative_to_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "elsewhere").mkdir()
    file = tmp_path / "etc" / "hookgate.toml"
    file.write_text('[storage]\nurl = "sqlite:///data/hookgate.db"\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path / "elsewhere")
    expected = f"sqlite:///{tmp_path / 'etc' / 'data' / 'hookgate.db'}"
    assert load_config(file).storage.url == expected
    assert load_config("../etc/hookgate.toml").storage.url == expected
    file.write_text('[storage]\nurl = "sqlite:////srv/hookgate.db"\n', encoding="utf-8")
    assert load_config(file).storage.url == "sqlite:////srv/hookgate.db"
    file.write_text(
        '[[destinations]]\nname = "bus"\nkind = "kafka"\ntopic = "t"\n'
        'brokers = ["127.0.0.1:9092"]\nsecurity_protocol = "SSL"\n'
        'ssl_ca_location = "certs/ca.pem"\n',
        encoding="utf-8",
    )
    [bus] = load_config("../etc/hookgate.toml").destinations
    assert bus.ssl_ca_location == str(tmp_path / "etc" / "certs" / "ca.pem")


# --------------------------------------------------------------------------- variables


ENV_FILE = """\
[storage]
url = "sqlite:///hookgate.db"

[admin]
tokens = ["${HG_T_ADMIN}"]

[[sources]]
name = "zaptec"
provider = "zaptec"
password = "${HG_T_ZAPTEC}"

[[sources]]
name = "easypark"
provider = "easypark"
username = "easypark"
password = "$HG_T_EASYPARK"
"""


def test_unset_variables_are_needed_only_where_used(tmp_path: Path) -> None:
    file = tmp_path / "hookgate.toml"
    file.write_text(ENV_FILE, encoding="utf-8")
    loaded = read_config(file, env={})
    assert loaded.missing == {
        "admin.tokens[0]": "HG_T_ADMIN",
        'sources["zaptec"].password': "HG_T_ZAPTEC",
    }
    assert loaded.require("storage", "authorization").storage.url.endswith("/hookgate.db")
    assert loaded.require('sources["easypark"]').source("easypark") is not None
    with pytest.raises(ConfigError, match=r'sources\["zaptec"\].password: .*HG_T_ZAPTEC'):
        loaded.require('sources["zaptec"]')
    with pytest.raises(ConfigError, match="HG_T_ADMIN"):
        loaded.require()
    with pytest.raises(ConfigError) as info:
        load_config(file)
    assert str(info.value) == (
        f"{file}:5: admin.tokens[0]: environment variable HG_T_ADMIN is not set"
    )
    with pytest.raises(ConfigError, match=rf'^{file}:10: sources\["zaptec"\].password'):
        loaded.require('sources["zaptec"]')


def test_a_variable_without_braces_is_warned_about(tmp_path: Path) -> None:
    file = tmp_path / "hookgate.toml"
    file.write_text(ENV_FILE, encoding="utf-8")
    loaded = read_config(file, env={"HG_T_ADMIN": "a", "HG_T_ZAPTEC": "z"})
    assert loaded.warnings == [
        'sources["easypark"].password: $HG_T_EASYPARK is taken literally (only '
        "${HG_T_EASYPARK} is replaced by the environment variable; write $$ for a literal $)"
    ]
    source = loaded.require().source("easypark")
    assert isinstance(source, EasyParkSource) and source.password == "$HG_T_EASYPARK"
    # Braced references, escapes and lowercase text are not warned about.
    file.write_text(ENV_FILE.replace("$HG_T_EASYPARK", "pa$$word$abc${HG_T_ZAPTEC}"))
    assert read_config(file, env={"HG_T_ADMIN": "a", "HG_T_ZAPTEC": "z"}).warnings == []


def test_patterns_of_the_rules_are_explained_in_words() -> None:
    doc = data()
    doc["authorization"] = {
        "groups": [{"id": "staff"}],
        "budgets": [
            {
                "id": "b1",
                "subject": "group",
                "subject_id": "staff",
                "metric": "money",
                "period": "month",
                "limit": "100",
                "currency": "sek",
            }
        ],
    }
    message = error_of(doc)
    assert message.startswith('authorization.budgets["b1"].currency:')
    assert "three-letter ISO 4217 currency code" in message and "regex" not in message


def test_console_session_limits_are_settings_checked_with_clear_errors() -> None:
    assert parse_config(data(), env={}).console.idle_seconds == 30 * 60
    assert parse_config(data(), env={}).console.lifetime_seconds == 12 * 3600
    chosen = parse_config(data(console={"idle_minutes": 10, "lifetime_hours": 2}), env={})
    assert (chosen.console.idle_seconds, chosen.console.lifetime_seconds) == (600, 7200)
    assert "console.idle_minutes" in error_of(data(console={"idle_minutes": 0}))
    assert "console.lifetime_hours" in error_of(data(console={"lifetime_hours": "12h"}))
    longer = error_of(data(console={"idle_minutes": 90, "lifetime_hours": 1}))
    assert "idle_minutes (90) is longer than lifetime_hours (1 h = 60 min)" in longer
    assert "idle_seconds" in error_of(data(console={"idle_seconds": 60}))
