"""OCPI 2.2.1 against `hookgate serve`, on both backends: a CPO registers with the token
A the CLI issued (hookgate fetches the CPO's versions with token B and answers token C),
pages through the token list, asks for real-time authorizations that are decided, audited
and reserved like Zaptec starts, and ends them with a Session and a CDR.

The client here is written from the OCPI 2.2.1 text, not from hookgate's models: the
envelope and object shapes below are the spec's required fields and types.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.e2e import free_port, migrate, query, run_cli, serving, write_config
from support.polling import until

pytestmark = [pytest.mark.e2e, pytest.mark.backends("sqlite", "postgresql")]

CPO_TOKEN_B = "cpo-token-b-4f9d2c"
AUTHORIZATION = {
    "session_reserve_kwh": 1.0,
    "groups": [{"id": "fleet"}, {"id": "frozen", "status": "blocked"}],
    "tokens": [
        {"uid": "TAG-1", "group_id": "fleet", "label": "Anna"},
        {"uid": "TAG-2", "group_id": "frozen"},
        {"uid": "APP-7", "type": "APP_USER", "whitelist": "NEVER"},
        {"uid": "BUD-1"},
    ],
    "budgets": [
        {
            "id": "bud1-day",
            "subject": "token",
            "subject_id": "BUD-1",
            "period": "day",
            "limit": "1.5",
        }
    ],
}


# -- the spec's shapes -------------------------------------------------------------------

TOKEN_FIELDS = {
    "country_code": str,
    "party_id": str,
    "uid": str,
    "type": str,
    "contract_id": str,
    "issuer": str,
    "valid": bool,
    "whitelist": str,
    "last_updated": str,
}


def check_datetime(value: str) -> datetime:
    """OCPI DateTime: RFC 3339 in UTC, at most 25 characters."""
    assert isinstance(value, str) and len(value) <= 25, value
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    assert moment.utcoffset() == timedelta(0), value
    return moment


def check_envelope(response: httpx.Response, http: int, status_code: int) -> Any:
    """The OCPI response envelope (spec 4.1.7); returns `data`."""
    assert response.status_code == http, response.text
    body = response.json()
    assert set(body) <= {"data", "status_code", "status_message", "timestamp"}, body
    assert body["status_code"] == status_code, body
    check_datetime(body["timestamp"])
    return body.get("data")


def check_token(token: dict[str, Any]) -> None:
    """The Token object (spec 12.3.2): required fields, types and lengths."""
    for name, kind in TOKEN_FIELDS.items():
        assert isinstance(token.get(name), kind), (name, token)
    assert len(token["country_code"]) == 2 and len(token["party_id"]) == 3
    assert len(token["uid"]) <= 36 and len(token["contract_id"]) <= 36
    assert token["type"] in ("AD_HOC_USER", "APP_USER", "OTHER", "RFID")
    assert token["whitelist"] in ("ALWAYS", "ALLOWED", "ALLOWED_OFFLINE", "NEVER")
    check_datetime(token["last_updated"])


def check_authorization_info(info: dict[str, Any]) -> None:
    """AuthorizationInfo (spec 12.4.1)."""
    assert set(info) <= {"allowed", "token", "location", "authorization_reference", "info"}
    assert info["allowed"] in ("ALLOWED", "BLOCKED", "EXPIRED", "NO_CREDIT", "NOT_ALLOWED")
    check_token(info["token"])
    if "authorization_reference" in info:
        assert 0 < len(info["authorization_reference"]) <= 36
    if "info" in info:
        assert set(info["info"]) == {"language", "text"}


# -- a CPO -------------------------------------------------------------------------------


def token_header(token: str) -> dict[str, str]:
    return {"Authorization": "Token " + base64.b64encode(token.encode()).decode()}


class Cpo:
    """The CPO's own versions endpoints (hookgate calls them while registering), and its
    client of hookgate's endpoints."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None]] = []
        self.offer = "2.2.1"
        cpo = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                cpo.seen.append((self.path, self.headers.get("Authorization")))
                if self.headers.get("Authorization") != token_header(CPO_TOKEN_B)["Authorization"]:
                    self._send(401, {"status_code": 2000, "timestamp": "2026-01-01T00:00:00Z"})
                    return
                root = f"http://127.0.0.1:{self.server.server_address[1]}/ocpi/cpo"
                if self.path == "/ocpi/cpo/versions":
                    data: Any = [{"version": cpo.offer, "url": f"{root}/{cpo.offer}"}]
                elif self.path == f"/ocpi/cpo/{cpo.offer}":
                    data = {
                        "version": cpo.offer,
                        "endpoints": [
                            {"identifier": "credentials", "role": "SENDER", "url": f"{root}/c"},
                            {"identifier": "locations", "role": "SENDER", "url": f"{root}/l"},
                        ],
                    }
                else:
                    self._send(404, {"status_code": 2000, "timestamp": "2026-01-01T00:00:00Z"})
                    return
                self._send(
                    200, {"data": data, "status_code": 1000, "timestamp": "2026-01-01T00:00:00Z"}
                )

            def _send(self, status: int, body: dict[str, Any]) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/ocpi/cpo/versions"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def credentials(self, url: str | None = None) -> dict[str, Any]:
        return {
            "token": CPO_TOKEN_B,
            "url": url or self.url,
            "roles": [
                {
                    "role": "CPO",
                    "business_details": {"name": "Charge Co"},
                    "party_id": "CHG",
                    "country_code": "SE",
                }
            ],
        }


@pytest.fixture
def cpo() -> Iterator[Cpo]:
    party = Cpo()
    yield party
    party.server.shutdown()


@pytest.fixture
def gateway(storage_url: str, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    port = free_port()
    config = write_config(
        tmp_path,
        port=port,
        url=storage_url,
        authorization=AUTHORIZATION,
        ocpi={
            "enabled": True,
            "public_url": f"http://127.0.0.1:{port}",
            "country_code": "SE",
            "party_id": "HGT",
            "business_name": "Fleet Co",
        },
    )
    migrate(config)
    with serving(config, port=port) as server:
        yield server.url, config


def session_object(reference: str, status: str, kwh: float, uid: str = "BUD-1") -> dict[str, Any]:
    """A CPO's Session object (spec 9.3.1)."""
    now = datetime.now(UTC).replace(microsecond=0)
    return {
        "country_code": "SE",
        "party_id": "CHG",
        "id": f"S-{reference[:8]}",
        "start_date_time": (now - timedelta(minutes=30)).isoformat().replace("+00:00", "Z"),
        "end_date_time": now.isoformat().replace("+00:00", "Z"),
        "kwh": kwh,
        "cdr_token": {
            "country_code": "SE",
            "party_id": "HGT",
            "uid": uid,
            "type": "RFID",
            "contract_id": uid,
        },
        "auth_method": "AUTH_REQUEST",
        "authorization_reference": reference,
        "location_id": "LOC-1",
        "evse_uid": "EVSE-1",
        "connector_id": "1",
        "currency": "SEK",
        "status": status,
        "last_updated": now.isoformat().replace("+00:00", "Z"),
    }


def _patch(kwh: float) -> dict[str, Any]:
    """A Session PATCH completing a session (spec 9.2.2: last_updated is required)."""
    now = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    return {"status": "COMPLETED", "kwh": kwh, "end_date_time": now, "last_updated": now}


def cdr_object(reference: str, kwh: float, uid: str = "BUD-1") -> dict[str, Any]:
    """A CPO's CDR object (spec 10.4.1), the parts a receiver must accept."""
    session = session_object(reference, "COMPLETED", kwh, uid)
    return {
        "country_code": "SE",
        "party_id": "CHG",
        "id": f"CDR-{reference[:8]}",
        "start_date_time": session["start_date_time"],
        "end_date_time": session["end_date_time"],
        "session_id": session["id"],
        "cdr_token": session["cdr_token"],
        "auth_method": "AUTH_REQUEST",
        "authorization_reference": reference,
        "cdr_location": {"id": "LOC-1"},
        "currency": "SEK",
        "charging_periods": [],
        "total_cost": {"excl_vat": 4.5, "incl_vat": 5.63},
        "total_energy": kwh,
        "total_time": 0.5,
        "last_updated": session["last_updated"],
    }


def test_register_list_authorize_and_end(
    gateway: tuple[str, Path], cpo: Cpo, storage_url: str
) -> None:
    url, config = gateway
    issued = json.loads(
        run_cli("ocpi", "issue", "--name", "Charge Co", "--json", "--config", str(config)).stdout
    )
    token_a = issued["token_a"]
    assert issued["status"] == "issued" and issued["versions_url"] == f"{url}/ocpi/versions"

    with httpx.Client(base_url=url, timeout=15) as http:
        # Versions: only for a known token; token A is one.
        check_envelope(http.get("/ocpi/versions"), 401, 2000)
        check_envelope(
            http.get("/ocpi/versions", headers={"Authorization": "Token nope"}), 401, 2000
        )
        versions = check_envelope(
            http.get("/ocpi/versions", headers=token_header(token_a)), 200, 1000
        )
        assert versions == [{"version": "2.2.1", "url": f"{url}/ocpi/2.2.1"}]
        echoed = http.get(
            "/ocpi/2.2.1",
            headers={**token_header(token_a), "X-Request-ID": "r-1", "X-Correlation-ID": "c-1"},
        )
        details = check_envelope(echoed, 200, 1000)
        assert (
            echoed.headers["x-request-id"] == "r-1" and echoed.headers["x-correlation-id"] == "c-1"
        )
        modules = {(e["identifier"], e["role"]): e["url"] for e in details["endpoints"]}
        assert modules[("tokens", "SENDER")] == f"{url}/ocpi/2.2.1/tokens"
        assert ("credentials", "SENDER") in modules and ("cdrs", "RECEIVER") in modules
        # Token A opens only versions and credentials.
        check_envelope(
            http.get(modules[("tokens", "SENDER")], headers=token_header(token_a)), 401, 2000
        )

        # Registration: hookgate fetches the CPO's versions with token B, answers token C.
        bad = http.post(
            "/ocpi/2.2.1/credentials", headers=token_header(token_a), json={"token": CPO_TOKEN_B}
        )
        check_envelope(bad, 400, 2001)
        ours = check_envelope(
            http.post(
                "/ocpi/2.2.1/credentials", headers=token_header(token_a), json=cpo.credentials()
            ),
            200,
            1000,
        )
        assert cpo.seen[0] == ("/ocpi/cpo/versions", token_header(CPO_TOKEN_B)["Authorization"])
        assert [path for path, _ in cpo.seen] == ["/ocpi/cpo/versions", "/ocpi/cpo/2.2.1"]
        token_c = ours["token"]
        assert token_c != token_a and ours["url"] == f"{url}/ocpi/versions"
        assert ours["roles"] == [
            {
                "role": "EMSP",
                "business_details": {"name": "Fleet Co"},
                "party_id": "HGT",
                "country_code": "SE",
            }
        ]
        c = token_header(token_c)
        check_envelope(http.get("/ocpi/versions", headers=token_header(token_a)), 401, 2000)
        again = http.post("/ocpi/2.2.1/credentials", headers=c, json=cpo.credentials())
        check_envelope(again, 405, 2000)
        assert (
            check_envelope(http.get("/ocpi/2.2.1/credentials", headers=c), 200, 1000)["token"]
            == token_c
        )
        listed = json.loads(run_cli("ocpi", "list", "--json", "--config", str(config)).stdout)
        [party] = listed["items"]
        assert party["status"] == "registered" and party["versions_url"] == cpo.url
        assert "token_b" not in party

        # The token list, a page at a time through the Link header.
        first = http.get("/ocpi/2.2.1/tokens", params={"limit": 3}, headers=c)
        page = check_envelope(first, 200, 1000)
        assert first.headers["x-total-count"] == "4" and first.headers["x-limit"] == "1000"
        assert len(page) == 3
        link = first.headers["link"]
        assert link.startswith(f"<{url}/ocpi/2.2.1/tokens?") and link.endswith('>; rel="next"')
        rest = http.get(link[1 : link.index(">")], headers=c)
        page += check_envelope(rest, 200, 1000)
        assert "link" not in rest.headers
        for token in page:
            check_token(token)
        tokens = {t["uid"]: t for t in page}
        assert set(tokens) == {"TAG-1", "TAG-2", "APP-7", "BUD-1"}
        assert tokens["TAG-1"]["valid"] and not tokens["TAG-2"]["valid"]
        assert tokens["TAG-1"]["group_id"] == "fleet" and tokens["APP-7"]["whitelist"] == "NEVER"
        assert tokens["TAG-1"]["issuer"] == "Fleet Co" and tokens["TAG-1"]["country_code"] == "SE"
        later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        empty = http.get("/ocpi/2.2.1/tokens", params={"date_from": later}, headers=c)
        assert check_envelope(empty, 200, 1000) == [] and empty.headers["x-total-count"] == "0"
        check_envelope(http.get("/ocpi/2.2.1/tokens", params={"limit": "0"}, headers=c), 400, 2001)
        # Digits of other scripts (a superscript one int() refuses) and past any page.
        for odd in ("\u00b9", "\u0663", "\uff15", "9" * 5000):
            for name in ("limit", "offset"):
                got = http.get("/ocpi/2.2.1/tokens", params={name: odd}, headers=c)
                check_envelope(got, 400, 2001)
        check_envelope(
            http.get("/ocpi/2.2.1/tokens", params={"date_to": "yesterday"}, headers=c), 400, 2001
        )

        # Real-time authorization: decided and audited like a Zaptec start.
        where = {"location_id": "LOC-1", "evse_uids": ["EVSE-1"]}
        allowed = check_envelope(
            http.post(
                "/ocpi/2.2.1/tokens/tag-1/authorize", params={"type": "RFID"}, json=where, headers=c
            ),
            200,
            1000,
        )
        check_authorization_info(allowed)
        assert allowed["allowed"] == "ALLOWED" and allowed["location"] == where
        reference = allowed["authorization_reference"]
        [(result, token, charger, installation, reasons)] = query(
            storage_url,
            "SELECT result, token, charger_id, installation_id, reasons "
            "FROM decisions WHERE source = 'ocpi' AND session_id = ?",
            reference,
        )
        assert (result, token, charger, installation) == ("ALLOWED", "TAG-1", "EVSE-1", "LOC-1")
        assert "token TAG-1 is valid" in str(reasons)
        assert query(
            storage_url,
            "SELECT status FROM authorized_sessions WHERE source = 'ocpi' AND session_id = ?",
            reference,
        ) == [("active",)]

        blocked = check_envelope(
            http.post("/ocpi/2.2.1/tokens/TAG-2/authorize", headers=c), 200, 1000
        )
        check_authorization_info(blocked)
        assert blocked["allowed"] == "BLOCKED" and "authorization_reference" not in blocked
        assert blocked["info"]["text"] == "This charge token is blocked."

        unknown = http.post(
            "/ocpi/2.2.1/tokens/NOBODY/authorize", params={"type": "RFID"}, headers=c
        )
        assert check_envelope(unknown, 404, 2004) is None
        wrong_type = http.post(
            "/ocpi/2.2.1/tokens/TAG-1/authorize", params={"type": "APP_USER"}, headers=c
        )
        check_envelope(wrong_type, 404, 2004)
        assert query(
            storage_url,
            "SELECT count(*) FROM decisions WHERE source = 'ocpi' AND result = 'UNKNOWN'",
        ) == [(2,)]
        metrics = http.get("/metrics").text
        for result, count in (("UNKNOWN", 2), ("ALLOWED", 1), ("BLOCKED", 1)):
            line = f'hookgate_decisions_total{{fallback="false",result="{result}",source="ocpi"}}'
            assert f"{line} {count}.0" in metrics, (line, metrics)
        check_envelope(
            http.post("/ocpi/2.2.1/tokens/TAG-1/authorize", params={"type": "CARD"}, headers=c),
            400,
            2001,
        )
        oversized = b'{"location_id": "' + b"x" * 70_000 + b'"}'
        check_envelope(
            http.post("/ocpi/2.2.1/tokens/TAG-1/authorize", content=oversized, headers=c), 413, 2000
        )
        check_envelope(
            http.post("/ocpi/2.2.1/tokens/TAG-1/authorize", content=b'{"evse_uids": 1}', headers=c),
            400,
            2001,
        )

        # The budget: one session's reservation leaves no room for a second until the
        # CPO's Session says the first ended (with 0.2 kWh charged).
        first_ok = check_envelope(
            http.post("/ocpi/2.2.1/tokens/BUD-1/authorize", headers=c), 200, 1000
        )
        assert first_ok["allowed"] == "ALLOWED"
        refused = check_envelope(
            http.post("/ocpi/2.2.1/tokens/BUD-1/authorize", headers=c), 200, 1000
        )
        assert refused["allowed"] == "NO_CREDIT"
        ref = first_ok["authorization_reference"]
        body = session_object(ref, "ACTIVE", 0.1)
        path = f"/ocpi/2.2.1/sessions/SE/CHG/{body['id']}"
        check_envelope(http.put(path, json=body, headers=c), 200, 1000)
        check_envelope(http.put(f"{path}x", json=body, headers=c), 400, 2001)
        check_envelope(http.patch(f"{path}x", json={"kwh": 1}, headers=c), 400, 2001)
        check_envelope(http.patch(f"{path}-none", json=_patch(0.2), headers=c), 404, 2000)
        # The CPO completes it with a PATCH of the fields that changed.
        check_envelope(http.patch(path, json=_patch(0.2), headers=c), 200, 1000)
        stored = check_envelope(http.get(path, headers=c), 200, 1000)
        assert stored["status"] == "COMPLETED" and stored["kwh"] == 0.2
        assert stored["authorization_reference"] == ref and stored["location_id"] == "LOC-1"
        assert query(
            storage_url,
            "SELECT status, energy_kwh FROM authorized_sessions "
            "WHERE source = 'ocpi' AND session_id = ?",
            ref,
        ) == [("ended", "0.2")]
        second = check_envelope(
            http.post("/ocpi/2.2.1/tokens/BUD-1/authorize", headers=c), 200, 1000
        )
        assert second["allowed"] == "ALLOWED"

        # A CDR ends the second one (no Session update came) and releases it too.
        cdr = cdr_object(second["authorization_reference"], 0.1)
        # A DateTime without a zone designator is UTC (spec 16.1).
        cdr["end_date_time"] = "2026-01-31T18:40:00"
        posted = http.post("/ocpi/2.2.1/cdrs", json=cdr, headers=c)
        check_envelope(posted, 200, 1000)
        assert posted.headers["location"] == f"{url}/ocpi/2.2.1/cdrs/SE/CHG/{cdr['id']}"
        assert check_envelope(http.get(posted.headers["location"], headers=c), 200, 1000) == cdr
        check_envelope(http.get("/ocpi/2.2.1/cdrs/SE/CHG/none", headers=c), 404, 2000)
        # Charged offline (no authorization quoted): still counted against the budgets.
        offline = cdr_object("offline1", 3.5, uid="TAG-1")
        del offline["authorization_reference"]
        check_envelope(http.post("/ocpi/2.2.1/cdrs", json=offline, headers=c), 200, 1000)
        assert query(
            storage_url,
            "SELECT status, token FROM authorized_sessions "
            "WHERE source = 'ocpi' AND session_id = ?",
            f"cdr:{offline['id']}",
        ) == [("unmatched", "TAG-1")]
        # With the CPO's price incl. VAT, for money budgets in its currency.
        assert query(
            storage_url,
            "SELECT kwh, money, currency FROM consumption "
            "WHERE source = 'ocpi' AND session_key = ?",
            f"session:cdr:{offline['id']}",
        ) == [("3.5", "5.63", "SEK")]
        [(status, ended_at)] = query(
            storage_url,
            "SELECT status, ended_at FROM authorized_sessions "
            "WHERE source = 'ocpi' AND session_id = ?",
            second["authorization_reference"],
        )
        if isinstance(ended_at, str):
            ended_at = datetime.fromisoformat(ended_at.replace("Z", "+00:00"))
        assert status == "ended" and ended_at == datetime(2026, 1, 31, 18, 40, tzinfo=UTC)
        third = check_envelope(
            http.post("/ocpi/2.2.1/tokens/BUD-1/authorize", headers=c), 200, 1000
        )
        assert third["allowed"] == "ALLOWED"

        # Updating the credentials: a CPO whose versions offer no 2.2.1 is refused (3002),
        # one that answers nothing usable too (3001); a good update gives a new token C.
        cpo.offer = "2.1.1"
        check_envelope(
            http.put("/ocpi/2.2.1/credentials", json=cpo.credentials(), headers=c), 400, 3002
        )
        cpo.offer = "2.2.1"
        gone = cpo.credentials(url=cpo.url.replace("/versions", "/missing"))
        check_envelope(http.put("/ocpi/2.2.1/credentials", json=gone, headers=c), 400, 3001)
        renewed = check_envelope(
            http.put("/ocpi/2.2.1/credentials", json=cpo.credentials(), headers=c), 200, 1000
        )
        c2 = token_header(renewed["token"])
        check_envelope(http.get("/ocpi/2.2.1/tokens", headers=c), 401, 2000)

        # Unregistering ends every token of the party.
        check_envelope(http.delete("/ocpi/2.2.1/credentials", headers=c2), 200, 1000)
        check_envelope(http.get("/ocpi/2.2.1/tokens", headers=c2), 401, 2000)

    # What the CPO sent is stored and processed like any provider's events.
    def statuses() -> dict[str, int]:
        rows = query(
            storage_url,
            "SELECT status, count(*) FROM inbox WHERE source = 'ocpi' GROUP BY status",
        )
        return {status: int(n) for status, n in rows}

    until(lambda: set(statuses()) == {"processed"}, what="OCPI events processed")
    assert statuses()["processed"] == 12  # 8 authorizations, 2 Session updates, 2 CDRs


def test_revoked_token_a_cannot_register(gateway: tuple[str, Path], cpo: Cpo) -> None:
    url, config = gateway
    issued = json.loads(
        run_cli("ocpi", "issue", "--name", "Other", "--json", "--config", str(config)).stdout
    )
    run_cli("ocpi", "revoke", issued["id"], "--config", str(config))
    refused = run_cli("ocpi", "revoke", issued["id"], "--config", str(config), check=False)
    assert refused.returncode == 1 and "no open party" in refused.stderr
    with httpx.Client(base_url=url, timeout=15) as http:
        answer = http.post(
            "/ocpi/2.2.1/credentials",
            headers=token_header(issued["token_a"]),
            json=cpo.credentials(),
        )
        check_envelope(answer, 401, 2000)
    assert cpo.seen == []


def test_token_a_registers_once_under_concurrent_posts(gateway: tuple[str, Path], cpo: Cpo) -> None:
    url, config = gateway
    issued = json.loads(
        run_cli("ocpi", "issue", "--name", "Racer", "--json", "--config", str(config)).stdout
    )
    barrier = threading.Barrier(4)
    answers: list[int] = []

    def post() -> None:
        with httpx.Client(base_url=url, timeout=15) as http:
            barrier.wait()
            answer = http.post(
                "/ocpi/2.2.1/credentials",
                headers=token_header(issued["token_a"]),
                json=cpo.credentials(),
            )
            answers.append(answer.status_code)

    threads = [threading.Thread(target=post) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    # One registration wins; the others find token A used up (or already spent).
    assert sorted(answers) == [200, 401, 401, 401]
    [party] = json.loads(run_cli("ocpi", "list", "--json", "--config", str(config)).stdout)["items"]
    assert party["status"] == "registered"
