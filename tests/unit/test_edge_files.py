"""`hookgate serve` raises its open-file limit to fit `[server] max_connections`."""

from __future__ import annotations

import resource
import subprocess
import sys

import pytest

_PROBE = """
import resource
from hookgate.ingress.edge import fit_file_limit
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
print(fit_file_limit({wanted}), resource.getrlimit(resource.RLIMIT_NOFILE)[0])
"""


def test_the_open_file_limit_is_raised_to_fit_max_connections() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2000 + 256:
        pytest.skip(f"the hard open-file limit ({hard}) leaves no room to raise")
    out = subprocess.run(
        [sys.executable, "-c", _PROBE.format(wanted=2000)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert out.stdout.split() == ["2256", "2256"]


def test_a_limit_that_cannot_fit_is_announced() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        pytest.skip("no hard open-file limit to run into")
    out = subprocess.run(
        [sys.executable, "-c", _PROBE.format(wanted=hard + 1000)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert out.stdout.split() == [str(hard), str(hard)]
    assert "lower [server] max_connections" in out.stderr
