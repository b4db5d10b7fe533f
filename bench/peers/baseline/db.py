"""SQLAlchemy 2 ORM: one `events` table with a unique (source, dedup_key), and charge tokens.

Durability matches hookgate's SQLite store: WAL journal with `synchronous=FULL`, so a
COMMIT that has returned is on stable storage. The pragmas are set on every new DBAPI
connection through the engine's `connect` event, as SQLAlchemy's SQLite docs recommend.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Engine,
    LargeBinary,
    String,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column


class Base(DeclarativeBase):
    pass


class Event(Base):
    """One received webhook, stored before it is acknowledged."""

    __tablename__ = "events"
    __table_args__ = (UniqueConstraint("source", "dedup_key", name="uq_events_source_dedup"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(64))
    provider: Mapped[str] = mapped_column(String(16))
    event_type: Mapped[str] = mapped_column(String(128))
    dedup_key: Mapped[str] = mapped_column(String(200))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    headers: Mapped[dict[str, Any]] = mapped_column(JSON)
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    raw_body: Mapped[bytes] = mapped_column(LargeBinary)


class ChargeToken(Base):
    """An RFID/app token that may start a Zaptec charging session."""

    __tablename__ = "charge_tokens"

    uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default="valid")
    group_id: Mapped[str | None] = mapped_column(String(64))


def make_engine(path: str) -> Engine:
    """A file-backed SQLite engine (QueuePool), durable like hookgate's store."""
    # timeout: wait up to 30 s for the write lock instead of failing with "database is locked".
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    return engine


def create_schema(engine: Engine) -> None:
    Base.metadata.create_all(engine)


def seed_tokens(engine: Engine, uids: list[str]) -> None:
    """Load charge tokens (the benchmark does this before the server starts)."""
    with Session(engine) as session:
        session.add_all(ChargeToken(uid=uid.upper(), status="valid") for uid in uids)
        session.commit()
