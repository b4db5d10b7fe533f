"""Server-side render time of every console page on a big database.

    .venv/bin/python bench/million.py --backend sqlite --path /tmp/million.db --keep
    .venv/bin/python bench/console.py --url sqlite:////tmp/million.db [--runs 20] [--only word]

Builds the gateway's application over the database (`create_app`, the graph `hookgate
serve` uses, without starting workers), signs a session cookie for an admin token, and
requests every page in process through ASGI (httpx's ASGITransport), so what is timed is
routing, the queries and the template rendering, not a network. Detail pages are opened
for rows that exist (an event, a delivery, a rejection, a charging session, a payment).
Each page is requested `--runs` times after one warm-up; the report gives p50, p95 and
max in milliseconds. Writes bench/results/console-<backend>.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from hookgate.app import create_app
from hookgate.config import load_config
from hookgate.console.auth import COOKIE

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-console-admin-token-000000"


def config_for(url: str, directory: Path) -> Any:
    """The starter configuration (`hookgate init`) over the database at `url`."""
    path = directory / "hookgate.toml"
    subprocess.run(
        [sys.executable, "-m", "hookgate", "init", "--path", str(path), "--db", "unused.db"],
        check=True,
        capture_output=True,
        cwd=directory,
    )
    text = path.read_text()
    text = text.replace('url = "sqlite:///unused.db"', f'url = "{url}"')
    start = text.index("[admin]")
    end = text.index("\n\n", start)
    text = text[:start] + f'[admin]\ntokens = ["{TOKEN}"]' + text[end:]
    path.write_text(text)
    os.environ.pop("HOOKGATE_STORAGE_URL", None)
    config = load_config(path)
    assert config.storage.url == url, config.storage.url
    return config


async def first_id(client: httpx.AsyncClient, path: str, key: str = "items") -> str | None:
    answer = await client.get(path, params={"format": "json"})
    answer.raise_for_status()
    items = answer.json().get(key) or []
    return str(items[0]["id"]) if items else None


async def measure(url: str, runs: int, only: list[str]) -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        config = config_for(url, Path(tmp))
    app = create_app(config)
    graph = app.gateway
    await graph.open()
    await graph.load_engine()
    _, cookie = app.console.sessions.begin(app.console.sessions.match(TOKEN))
    transport = httpx.ASGITransport(app=app)
    results: dict[str, dict[str, float]] = {}
    async with httpx.AsyncClient(
        transport=transport, base_url="http://bench", cookies={COOKIE: cookie}
    ) as client:
        event = await first_id(client, "/console/events")
        plate_page = await client.get("/console/parking", params={"format": "json"})
        parking = plate_page.json()["parking"]
        plate = parking[0]["license_number"] if parking else "NONE"
        payments = plate_page.json()["payments"]
        charging = (await client.get("/console/charging", params={"format": "json"})).json()
        # Time the session page on a session with meter values (its chart), when one is listed.
        session = charging["sessions"][0]["id"] if charging["sessions"] else None
        for listed in charging["sessions"]:
            page = f"/console/charging/sessions/{listed['id']}"
            detail = (await client.get(page, params={"format": "json"})).json()
            if detail.get("charging_session", {}).get("meter_values"):
                session = listed["id"]
                break
        delivery = await first_id(client, "/console/deliveries")
        rejection = await first_id(client, "/console/rejections")
        pages = {
            "overview, last hour": "/console/",
            "overview, last day": "/console/?window=day",
            "overview, last week": "/console/?window=week",
            "events": "/console/events",
            "events, polled rows": "/console/events?fragment=rows",
            "events, status=failed": "/console/events?status=failed",
            "events, search a plate": f"/console/events?q={plate}",
            "events, field licenseNumber": f"/console/events?field=licenseNumber={plate}",
            "event detail": f"/console/events/{event}",
            "rejections, last day": "/console/rejections",
            "rejections, last week": "/console/rejections?window=week",
            "rejection detail": f"/console/rejections/{rejection}",
            "deliveries": "/console/deliveries",
            "deliveries, status=dead": "/console/deliveries?status=dead",
            "delivery detail": f"/console/deliveries/{delivery}",
            "charging": "/console/charging",
            "charging session": f"/console/charging/sessions/{session}" if session else None,
            "parking and payments": "/console/parking",
            "payment detail": f"/console/payments/{payments[0]['id']}" if payments else None,
            "fleet costs": "/console/costs",
            "reconciliation, per vehicle": "/console/reconciliation",
            "reconciliation, per legal entity": "/console/reconciliation?group=legal_entity",
            "reconciliation, exceptions CSV": "/console/reconciliation/download?as=exceptions",
            "audit": "/console/audit",
        }
        for name, path in pages.items():
            if only and not any(word in name for word in only):
                continue
            if path is None or path.endswith("/None"):
                print(f"  {name:<34} skipped: no row to open", file=sys.stderr)
                continue
            warm = await client.get(path)
            assert warm.status_code == 200, (path, warm.status_code, warm.text[:300])
            times = []
            for _ in range(runs):
                began = time.perf_counter()
                answer = await client.get(path)
                times.append((time.perf_counter() - began) * 1000)
                assert answer.status_code == 200
            times.sort()
            results[name] = {
                "p50_ms": round(statistics.median(times), 1),
                "p95_ms": round(times[max(0, int(len(times) * 0.95) - 1)], 1),
                "max_ms": round(times[-1], 1),
                "bytes": len(answer.content),
            }
            print(f"  {name:<34} p95 {results[name]['p95_ms']:8.1f} ms", file=sys.stderr)
    await graph.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True, help="storage URL of a filled database")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--label", default=None, help="what the database holds, for the report")
    parser.add_argument(
        "--only", action="append", default=[], help="time only pages whose name has this word"
    )
    args = parser.parse_args()
    results = asyncio.run(measure(args.url, args.runs, args.only))
    backend = "sqlite" if args.url.startswith("sqlite") else "postgresql"
    report = {
        "backend": backend,
        "database": args.label or args.url.split("@")[-1],
        "runs": args.runs,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared)",
        "pages": results,
    }
    if args.only:  # a partial run: printed, the full report files left as they are
        print(json.dumps(report, indent=2))
        return 0
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"console-{backend}.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        f"# Console pages on {report['database']} ({backend})",
        "",
        f"Server-side time per page in process, {args.runs} runs after a warm-up; "
        f"{report['machine']}.",
        "",
        "| page | p50 ms | p95 ms | max ms | bytes |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {name} | {r['p50_ms']} | {r['p95_ms']} | {r['max_ms']} | {r['bytes']} |"
            for name, r in results.items()
        ),
    ]
    (out / f"console-{backend}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
