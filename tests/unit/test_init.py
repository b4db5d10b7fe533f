"""`hookgate init` prints what to enter at each provider with the public URL, never the
listen address; secrets only a provider can issue are visibly placeholders; `hookgate
admin-token` prints the token for scripts."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from hookgate.cli import main, server
from hookgate.config import PLACEHOLDER, load_config
from hookgate.providers import ampeco_catalog

OPENAPI = Path(__file__).resolve().parents[3] / "shared/contracts/ampeco-openapi-3.110.0.json"


def _init(tmp_path: Path, *args: str, input: str | None = None) -> Result:
    result = CliRunner().invoke(
        main, ["init", "--path", str(tmp_path / "hookgate.toml"), *args], input=input
    )
    return result


def _heredoc(output: str) -> dict[str, Any]:
    """The JSON body the AMPECO step pipes into curl."""
    match = re.search(r"<<'JSON'\n(.*?)\nJSON\n", output, re.S)
    assert match, output
    document: dict[str, Any] = json.loads(match.group(1))
    return document


def _block_after(output: str, marker: str) -> dict[str, Any]:
    """The indented JSON object printed after `marker`."""
    rest = output[output.index(marker) + len(marker) :]
    start = rest.index("{")
    end = rest.index("\n" + " " * 7 + "}", start) + 9
    document: dict[str, Any] = json.loads(rest[start:end])
    return document


def test_without_a_terminal_the_url_is_a_placeholder_that_says_so(tmp_path: Path) -> None:
    result = _init(tmp_path, "--port", "8123")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "PUBLIC URL IS A PLACEHOLDER" in out
    assert f"{server.PLACEHOLDER_URL}/hooks/zaptec/oauth/token" in out
    # The listen address is never offered as what a provider should call.
    assert "127.0.0.1" not in out
    config = load_config(tmp_path / "hookgate.toml")
    assert config.server.public_url == server.PLACEHOLDER_URL
    assert config.server.port == 8123
    assert "Then start the gateway: hookgate serve" in out


def test_placeholders_are_visible_random_and_flagged_by_check_config(tmp_path: Path) -> None:
    assert _init(tmp_path / "a", "--public-url", "https://gw.example.net").exit_code == 0
    assert _init(tmp_path / "b", "--public-url", "https://gw.example.net").exit_code == 0
    first = load_config(tmp_path / "a" / "hookgate.toml")
    second = load_config(tmp_path / "b" / "hookgate.toml")
    for name in ("ampeco", "ztlment"):
        (a,) = first.source(name).credentials()  # type: ignore[union-attr]
        (b,) = second.source(name).credentials()  # type: ignore[union-attr]
        assert a.startswith(PLACEHOLDER) and b.startswith(PLACEHOLDER)
        assert a != b, "a placeholder anyone can read in the source would be a known secret"
    for name in ("zaptec", "easypark"):
        (secret,) = first.source(name).credentials()  # type: ignore[union-attr]
        assert not secret.startswith(PLACEHOLDER)
    checked = CliRunner().invoke(
        main, ["check-config", "--config", str(tmp_path / "a" / "hookgate.toml")]
    )
    assert checked.exit_code == 0, checked.output
    lines = {line.split()[0]: line for line in checked.output.splitlines()[1:]}
    assert "PLACEHOLDER secret" in lines["ampeco"] and "AMPECO API token" in lines["ampeco"]
    assert "PLACEHOLDER secret" in lines["ztlment"] and "ZTLment" in lines["ztlment"]
    assert lines["zaptec"].rstrip().endswith("ok")


def test_the_given_url_is_in_every_provider_step(tmp_path: Path) -> None:
    result = _init(tmp_path, "--public-url", "https://gw.example.net/")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "PLACEHOLDER" not in out.split("Enter at each provider")[0]
    config = load_config(tmp_path / "hookgate.toml")
    zaptec = config.source("zaptec")
    easypark = config.source("easypark")
    assert zaptec is not None and easypark is not None
    for line in (
        "Authentication URL      https://gw.example.net/hooks/zaptec/oauth/token",
        "Authentication payload  grant_type=password&username=zaptec&password="
        f"{zaptec.credentials()[0]}",
        "Session start URL       https://gw.example.net/hooks/zaptec/session-start",
        "Session end URL         https://gw.example.net/hooks/zaptec/session-end",
        "Endpoint                https://gw.example.net/hooks/easypark",
        f"HTTP Basic              easypark / {easypark.credentials()[0]}",
        f"Admin API token  {config.admin.tokens[0]}",
    ):
        assert line in out, line
    assert config.server.public_url == "https://gw.example.net"


def test_the_ampeco_subscription_body_is_what_the_api_takes(tmp_path: Path) -> None:
    result = _init(tmp_path, "--public-url", "https://gw.example.net")
    out = result.output
    assert '"https://<your AMPECO tenant>/public-api/notifications/v2.0"' in out
    assert '-H "Authorization: Bearer <the token>"' in out
    body = _heredoc(out)
    assert body["via"] == "webhook"
    assert body["webhook"] == {"callbackUrl": "https://gw.example.net/hooks/ampeco"}
    names = body["notifications"]
    assert len(names) == len(set(names)) > 20
    assert {"session.start.stop.notification", "cdr.received", "evse.changed"} <= set(names)
    assert not set(names) & set(ampeco_catalog.DEPRECATED)
    assert set(names) <= set(ampeco_catalog.EVENTS)
    if OPENAPI.is_file():
        spec = json.loads(OPENAPI.read_bytes())
        operation = spec["paths"]["/public-api/notifications/v2.0"]["post"]
        schema = operation["requestBody"]["content"]["application/json"]["schema"]
        assert set(names) <= set(schema["properties"]["notifications"]["items"]["enum"])
        assert set(body) <= set(schema["properties"])
        assert set(body["webhook"]) == set(schema["properties"]["webhook"]["required"])


def test_the_ztlment_webhook_body(tmp_path: Path) -> None:
    out = _init(tmp_path, "--public-url", "https://gw.example.net").output
    assert "Create Payment Webhook (POST /v1/webhooks" in out
    body = _block_after(out, "body:\n")
    assert body == {
        "url": "https://gw.example.net/hooks/ztlment",
        "object_type": ["PAYMENT_OBJECT", "APPROVAL_OBJECT"],
    }


def test_on_a_terminal_the_url_is_asked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server, "_interactive", lambda: True)
    result = _init(tmp_path, input="https://typed.example.org\n")
    assert result.exit_code == 0, result.output
    assert "Public HTTPS URL" in result.output
    assert "https://typed.example.org/hooks/easypark" in result.output
    assert load_config(tmp_path / "hookgate.toml").server.public_url == (
        "https://typed.example.org"
    )


def test_a_url_without_scheme_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    result = _init(tmp_path, "--public-url", "gw.example.net")
    assert result.exit_code != 0
    assert "--public-url 'gw.example.net'" in result.output and "https://" in result.output
    assert not (tmp_path / "hookgate.toml").exists()


def test_if_missing_does_not_tell_to_start_what_make_run_starts(tmp_path: Path) -> None:
    result = _init(tmp_path, "--if-missing", "--public-url", "http://127.0.0.1:8000")
    assert result.exit_code == 0, result.output
    assert "hookgate serve" not in result.output
    again = _init(tmp_path, "--if-missing")
    assert again.exit_code == 0 and "leaving it as it is" in again.output
    makefile = (Path(__file__).resolve().parents[2] / "Makefile").read_text()
    assert "hookgate init --if-missing" in makefile


def test_admin_token_prints_the_first_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "hookgate.toml"
    config.write_text('[admin]\ntokens = ["${ADMIN_TOKEN}", "second"]\n', encoding="utf-8")
    monkeypatch.setenv("ADMIN_TOKEN", "tok-from-env")
    result = CliRunner().invoke(main, ["admin-token", "--config", str(config)])
    assert result.exit_code == 0 and result.output == "tok-from-env\n"

    config.write_text("[admin]\ntokens = []\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["admin-token", "--config", str(config)])
    assert result.exit_code != 0
    assert "has no admin token" in result.output and "[admin] tokens" in result.output


def test_admin_token_by_name(tmp_path: Path) -> None:
    config = tmp_path / "hookgate.toml"
    config.write_text(
        '[admin]\ntokens = ["old", { name = "grafana", token = "t-read", scope = "read" }]\n',
        encoding="utf-8",
    )
    named = CliRunner().invoke(main, ["admin-token", "--config", str(config), "--name", "grafana"])
    assert named.exit_code == 0 and named.output == "t-read\n"
    wrong = CliRunner().invoke(main, ["admin-token", "--config", str(config), "--name", "nope"])
    assert wrong.exit_code == 1 and "configured: admin, grafana" in wrong.output


def test_admin_token_matches_what_init_wrote(tmp_path: Path) -> None:
    out = _init(tmp_path, "--public-url", "https://gw.example.net").output
    result = CliRunner().invoke(main, ["admin-token", "--config", str(tmp_path / "hookgate.toml")])
    assert f"Admin API token  {result.output.strip()}" in out
