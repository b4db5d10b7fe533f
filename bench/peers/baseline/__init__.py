"""The baseline peer: the webhook receiver a Python team would write by hand.

FastAPI + pydantic + SQLAlchemy 2 ORM on SQLite, one row per request in its own
transaction, the same signature and credential checks as hookgate. See
docs/benchmarks.md for what it does and does not do, and why the endpoints are sync.

    BASELINE_DB=/tmp/baseline.db .venv/bin/python -m uvicorn baseline.app:app \
        --app-dir bench/peers --host 127.0.0.1 --port 8000 \
        --loop uvloop --http httptools --no-access-log
"""
