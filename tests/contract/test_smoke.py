"""The fixture gateway answers over a real socket."""

import pytest

from support.gateway import Running

pytestmark = pytest.mark.backends("sqlite", "postgresql")


def test_healthz(gateway: Running) -> None:
    import httpx

    assert httpx.get(f"{gateway.url}/healthz").json() == {"status": "ok"}
