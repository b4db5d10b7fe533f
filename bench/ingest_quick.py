"""Quick ingest benchmark: signed AMPECO notifications through wrk, hookgate beside a ceiling.

Usage: .venv/bin/python bench/ingest_quick.py [--seconds 10] [--connections 32]

The ceiling is the same ASGI server (uvicorn, uvloop, httptools) answering 202 with no work.
hookgate runs on SQLite with full sync. Every request carries a distinct, correctly signed
body, so every request is a durable insert. Writes bench/results/ingest_quick.{json,md}.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-secret"
CEILING_APP = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 202,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b"{}"})
"""


def lua_script(path: Path, count: int) -> None:
    """A wrk script cycling through `count` distinct signed bodies read from a side file."""
    data = path.with_suffix(".tsv")
    with data.open("w", encoding="utf-8") as out:
        for i in range(count):
            body = json.dumps(
                {
                    "notification": "NetworkStatusNotification",
                    "chargePointId": 1000 + i,
                    "timestamp": f"2025-12-04T12:{i % 60:02d}:{i % 60:02d}Z",
                    "networkStatus": "available",
                    "seq": f"{os.getpid()}-{time.time_ns()}-{i}",
                },
                separators=(",", ":"),
            )
            sig = hmac.new(SECRET.encode(), body.encode(), hashlib.sha256).hexdigest()
            out.write(f"{sig}\t{body}\n")
    path.write_text(
        "local bodies = {}\n"
        f"for line in io.lines('{data}') do\n"
        "  local tab = line:find('\\t')\n"
        "  bodies[#bodies + 1] = {line:sub(tab + 1), line:sub(1, tab - 1)}\n"
        "end\n"
        "local i = 0\n"
        "request = function()\n"
        "  i = i + 1\n"
        "  local b = bodies[(i % #bodies) + 1]\n"
        "  return wrk.format('POST', '/hooks/ampeco', "
        "{['Content-Type']='application/json', ['X-Signature']=b[2]}, b[1])\n"
        "end\n",
        encoding="utf-8",
    )


def wait(url: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.post(url, content=b"{}", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def run_wrk(url: str, script: Path, seconds: int, connections: int) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def pct(p: str) -> float:
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
        if not m:
            return float("nan")
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": rps,
        "p50_ms": pct("50"),
        "p99_ms": pct("99"),
        "non_2xx": float(non2xx.group(1)) if non2xx else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    port = 18765
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        script = work / "ampeco.lua"
        lua_script(script, 200_000)
        (work / "ceiling.py").write_text(CEILING_APP)
        config = work / "hookgate.toml"
        config.write_text(
            f'[server]\nport = {port}\n[storage]\nurl = "sqlite:///{work}/bench.db"\n'
            f'[logging]\nlevel = "warning"\n'
            f'[[sources]]\nname = "ampeco"\nprovider = "ampeco"\nsecrets = ["{SECRET}"]\n'
        )
        py = sys.executable
        subprocess.run([py, "-m", "hookgate", "migrate", "--config", str(config)], check=True)
        results = {}
        for name, cmd in (
            (
                "ceiling",
                [
                    py,
                    "-m",
                    "uvicorn",
                    "ceiling:app",
                    "--port",
                    str(port),
                    "--loop",
                    "uvloop",
                    "--http",
                    "httptools",
                    "--no-access-log",
                    "--log-level",
                    "warning",
                ],
            ),
            ("hookgate-sqlite", [py, "-m", "hookgate", "serve", "--config", str(config)]),
        ):
            proc = subprocess.Popen(cmd, cwd=work)
            try:
                wait(f"http://127.0.0.1:{port}/hooks/ampeco")
                results[name] = run_wrk(
                    f"http://127.0.0.1:{port}", script, args.seconds, args.connections
                )
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
    results["ratio_hookgate_over_ceiling"] = {
        "rps": results["hookgate-sqlite"]["rps"] / results["ceiling"]["rps"]
    }
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "ingest_quick.json").write_text(json.dumps(results, indent=2))
    lines = ["| server | req/s | p50 ms | p99 ms | non-2xx |", "|---|---|---|---|---|"]
    for name in ("ceiling", "hookgate-sqlite"):
        r = results[name]
        row = f"| {name} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} |"
        lines.append(f"{row} {r['non_2xx']:.0f} |")
    ratio = results["ratio_hookgate_over_ceiling"]["rps"]
    lines.append(f"\nhookgate / ceiling throughput: {ratio:.2f}")
    (out / "ingest_quick.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
