"""Fuzzing campaign: the targets of tests/unit/test_fuzz.py, run for minutes instead of a
few hundred examples each.

    .venv/bin/python bench/fuzz.py [--minutes 5] [--only parse,verify,...] [--admin]

Every target (each provider parser per route, every source's authentication and
signature check, the token endpoint, bearer tokens, the configuration loader, the token
CSV import, the cursor decoders; with `--admin` also the admin list endpoints over HTTP
against a gateway on 127.0.0.1 with a fresh SQLite database) gets an equal share of the
time. Hypothesis generates and shrinks the inputs; a target that fails prints its
minimal failing input. Reports examples run and failures per target, writes
bench/results/fuzz.{json,md} and exits 1 on any failure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import support.fuzz_targets as ft  # noqa: E402 (the shared targets live beside the tests)

RESULTS = ROOT / "bench" / "results"
CHUNK = 200  # examples per Hypothesis run; runs repeat until the target's time is up


def targets() -> dict[str, tuple[str, Callable[..., None], dict[str, Any]]]:
    """name -> (group, check, strategies)."""
    out: dict[str, tuple[str, Callable[..., None], dict[str, Any]]] = {}
    for source, route in ft.ROUTES:
        provider = ft.SOURCES[source].provider
        out[f"parse {source}/{route}".rstrip("/")] = (
            "parse",
            lambda body, s=source, r=route: ft.check_parse(s, r, body),
            {"body": ft.bodies(provider)},
        )
    for source in sorted(ft.SOURCES):
        out[f"verify {source}"] = (
            "verify",
            lambda headers, body, s=source: ft.check_verify(s, headers, body),
            {"headers": ft.credentials(), "body": st.binary(max_size=64)},
        )
    out["token endpoint"] = (
        "oauth",
        ft.check_token_endpoint,
        {
            "content_type": ft.content_types,
            "body": ft.form_bodies,
            "auth": st.none() | ft.header_text,
        },
    )
    out["bearer tokens"] = ("oauth", ft.check_bearer, {"token": ft.header_text})
    out["config loader"] = ("config", ft.check_config, {"data": ft.config_documents})
    out["token CSV import"] = ("csv", ft.check_csv, {"text": ft.csv_texts})
    out["cursor decoders"] = ("cursor", ft.check_cursor, {"text": ft.cursor_texts})
    return out


@contextmanager
def gateway() -> Iterator[str]:
    """A gateway on 127.0.0.1 (fresh SQLite database) for the admin target."""
    import uvicorn

    from hookgate.app import create_app
    from hookgate.config import parse_config
    from hookgate.store import make_store
    from support.gateway import base_config

    with tempfile.TemporaryDirectory() as tmp:
        config = parse_config(base_config(Path(tmp) / "fuzz.db"), env={})
        asyncio.run(make_store(config.storage).migrate())
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(config),
                host="127.0.0.1",
                port=0,
                log_config=None,
                access_log=False,
                lifespan="on",
            )
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the gateway did not start")
            time.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            thread.join(10)


def admin_check(url: str) -> Callable[[str], None]:
    from support.gateway import ADMIN_TOKEN

    client = httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10
    )

    def check(query: str) -> None:
        response = client.get(query)
        ft.check_admin_answer(
            response.status_code, response.headers.get("content-type", ""), response.content
        )

    return check


def run(
    name: str, check: Callable[..., None], strategies: dict[str, Any], seconds: float
) -> dict[str, Any]:
    """Run one target until its time is up; the first failure ends it."""
    count = 0

    def counted(**kwargs: Any) -> None:
        nonlocal count
        count += 1
        check(**kwargs)

    test = settings(
        max_examples=CHUNK,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )(given(**strategies)(counted))
    started = time.monotonic()
    failure = None
    while time.monotonic() - started < seconds:
        try:
            test()
        except Exception as exc:  # a falsified property: report it with its input
            failure = "".join(traceback.format_exception(exc))[-3000:]
            break
    elapsed = time.monotonic() - started
    print(
        f"{name:32} {count:>9,} examples {elapsed:7.1f} s  " + ("FAILED" if failure else "ok"),
        flush=True,
    )
    if failure:
        print(failure, flush=True)
    return {"target": name, "examples": count, "seconds": round(elapsed, 1), "failure": failure}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--only", default="", help="groups: parse,verify,oauth,config,csv,cursor")
    parser.add_argument("--admin", action="store_true", help="also the admin API over HTTP")
    args = parser.parse_args()
    chosen = {g for g in args.only.split(",") if g}
    selected = {
        name: (check, strategies)
        for name, (group, check, strategies) in targets().items()
        if not chosen or group in chosen
    }
    shares = len(selected) + (1 if args.admin else 0)
    seconds = args.minutes * 60 / shares
    results = [
        run(name, check, strategies, seconds) for name, (check, strategies) in selected.items()
    ]
    if args.admin:
        with gateway() as url:
            results.append(
                run("admin list queries", admin_check(url), {"query": ft.admin_queries()}, seconds)
            )
    failures = [r for r in results if r["failure"]]
    total = sum(r["examples"] for r in results)
    print(f"{total:,} examples, {len(failures)} failing targets")
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "minutes": args.minutes,
        "python": platform.python_version(),
        "machine": "shared (2 cores, several processes at once)",
    }
    (RESULTS / "fuzz.json").write_text(json.dumps({**meta, "results": results}, indent=2) + "\n")
    lines = [
        f"# Fuzzing campaign ({meta['when']}, {args.minutes} min, Python {meta['python']})",
        "",
        "| target | examples | seconds | result |",
        "|---|---:|---:|---|",
    ]
    lines += [
        f"| {r['target']} | {r['examples']:,} | {r['seconds']} | "
        + ("**failed**" if r["failure"] else "0 failures")
        + " |"
        for r in results
    ]
    lines += ["", f"Total: {total:,} examples, {len(failures)} failing targets."]
    (RESULTS / "fuzz.md").write_text("\n".join(lines) + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
