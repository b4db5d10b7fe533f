"""The trailing-slash redirect names no host: `Host` is the client's to choose."""

from __future__ import annotations

import httpx

from support.gateway import Running


def test_a_trailing_slash_redirect_is_relative(gateway: Running) -> None:
    answer = httpx.get(
        f"{gateway.url}/api/v1/events/?limit=2",
        headers={"Host": "evil.example"},
        follow_redirects=False,
    )
    assert answer.status_code == 307
    assert answer.headers["location"] == "/api/v1/events?limit=2"
    # A path that matches nothing either way is still a 404 problem.
    missing = httpx.get(f"{gateway.url}/api/v1/nothing/", follow_redirects=False)
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    # Never a network-path reference ("//host"), whatever the path.
    odd = httpx.get(f"{gateway.url}//evil.example/", follow_redirects=False)
    assert not odd.headers.get("location", "").startswith("//")
    with gateway.admin() as admin:
        followed = admin.get("/api/v1/events/", follow_redirects=True)
    assert followed.status_code == 200 and "items" in followed.json()
