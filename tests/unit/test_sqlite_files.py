"""The SQLite database file, its WAL and shared memory: private modes, loose-mode warnings,
clear errors when the filesystem refuses."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from hookgate.domain.errors import StoreError
from hookgate.store.sqlite import SqliteStore


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def usual_umask():  # type: ignore[no-untyped-def]
    """The common umask 022, under which SQLite on its own creates files 644."""
    old = os.umask(0o022)
    yield
    os.umask(old)


async def test_database_wal_and_shm_are_created_private(tmp_path: Path, usual_umask: None) -> None:
    db = tmp_path / "data" / "hookgate.db"
    store = SqliteStore(str(db), auto_migrate=True)
    await store.open()
    try:
        await store.secret("oauth_signing_key", b"k" * 32)
        files = [db, Path(f"{db}-wal"), Path(f"{db}-shm")]
        assert all(f.exists() for f in files)
        assert {f.name: oct(_mode(f)) for f in files} == {f.name: "0o600" for f in files}
    finally:
        await store.close()


async def test_migrate_creates_the_file_private(tmp_path: Path, usual_umask: None) -> None:
    db = tmp_path / "hookgate.db"
    await SqliteStore(str(db)).migrate()
    assert oct(_mode(db)) == "0o600"


async def test_loose_modes_are_warned_about_at_start(tmp_path: Path) -> None:
    db = tmp_path / "hookgate.db"
    await SqliteStore(str(db)).migrate()
    db.chmod(0o644)
    store = SqliteStore(str(db))
    with capture_logs() as logs:
        await store.open()
    await store.close()
    warned = [e for e in logs if e["event"] == "database file readable by others"]
    assert [(e["file"], e["mode"]) for e in warned] == [(str(db), "644")]
    assert warned[0]["fix"] == f"chmod 600 {db}"
    # A private file is not warned about.
    db.chmod(0o600)
    with capture_logs() as logs:
        fresh = SqliteStore(str(db))
        await fresh.open()
        await fresh.close()
    assert not [e for e in logs if e["event"] == "database file readable by others"]


async def test_migrate_on_an_unwritable_place_says_what_to_fix(tmp_path: Path) -> None:
    # A path whose parent is a file: the database cannot be created there.
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot create"):
        await SqliteStore(str(blocker / "hookgate.db")).migrate()
