"""docs/roaming.md shows requests hookgate answers: every curl line names a method and an
/ocpi/ path the OCPI application routes, with the token header the spec asks for, and
every `hookgate ...` command it names exists."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from starlette.routing import Route

from hookgate.cli import main
from hookgate.config import OcpiConfig
from hookgate.roaming.ocpi.http import OcpiApi

DOC = Path(__file__).resolve().parents[2] / "docs" / "roaming.md"


def _curl_commands(text: str) -> list[list[str]]:
    """Every curl command of the page's shell blocks, continuation lines joined."""
    blocks = re.findall(r"```sh\n(.*?)```", text, flags=re.S)
    joined = "\n".join(blocks).replace("\\\n", " ")
    return [shlex.split(line) for line in joined.splitlines() if line.strip().startswith("curl")]


def _routes() -> list[Route]:
    app = OcpiApi(OcpiConfig(enabled=True), None, None).app()  # type: ignore[arg-type]
    return [r for r in app.routes if isinstance(r, Route)]


def test_every_curl_line_is_a_routed_ocpi_request() -> None:
    commands = _curl_commands(DOC.read_text(encoding="utf-8"))
    assert len(commands) >= 10
    routes = _routes()
    seen = set()
    for args in commands:
        method = args[args.index("-X") + 1] if "-X" in args else "GET"
        if "-X" not in args and ("-d" in args):
            method = "POST"
        [url] = [a for a in args if a.startswith("$HOOKGATE/")]
        path = url.removeprefix("$HOOKGATE").split("?")[0]
        headers = [args[i + 1] for i, a in enumerate(args) if a == "-H"]
        assert any(re.fullmatch(r"Authorization: Token \$[AC]", h) for h in headers), args
        matched = [r for r in routes if r.path_regex.match(path) and method in (r.methods or ())]
        assert matched, f"no route answers {method} {path}"
        seen.add((method, matched[0].path))
    # The page shows every endpoint a CPO calls.
    assert seen == {(m, r.path) for r in routes for m in (r.methods or ()) if m != "HEAD"}


def test_every_command_named_exists() -> None:
    text = DOC.read_text(encoding="utf-8")
    named = re.findall(r"(?:`|^\s*)hookgate ([a-z-]+(?: [a-z-]+)?)", text, flags=re.M)
    assert {"ocpi issue", "tokens export"} <= set(named)
    for command in set(named):
        group, _, sub = command.partition(" ")
        assert group in main.commands, command
        found = main.commands[group]
        if sub and hasattr(found, "commands"):
            assert sub in found.commands, command  # type: ignore[attr-defined]
