"""Helpers shared by the test suites: real gateways and databases, end-to-end processes,
provider load, webhook receivers, polling with a deadline and a clock tests can move.

pytest puts `tests/` on the import path (`pythonpath` in pyproject.toml), so test modules
and `bench/` import these as `support.<module>`; conftest.py only declares fixtures.
"""
