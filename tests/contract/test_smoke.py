"""The fixture gateway answers over a real socket."""

from conftest import Running


def test_healthz(gateway: Running) -> None:
    import httpx

    assert httpx.get(f"{gateway.url}/healthz").json() == {"status": "ok"}
