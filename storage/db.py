"""Engine and transaction setup for SQLite (embedded default) and PostgreSQL.

SQLite runs in WAL mode with a busy timeout, and write transactions start with
``BEGIN IMMEDIATE`` so two writers never deadlock on a lock upgrade.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool


def create_engine(url: str, *, pool_size: int = 20, busy_timeout_ms: int = 10_000) -> AsyncEngine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        kwargs: dict[str, Any] = {}
        if database in ("", ":memory:"):
            raise ValueError("use a SQLite file, not :memory: (state must survive a restart)")
        engine = create_async_engine(url, pool_size=pool_size, max_overflow=0, **kwargs)
        _configure_sqlite(engine, busy_timeout_ms)
        return engine
    if parsed.get_backend_name() == "postgresql":
        return create_async_engine(
            url,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_pre_ping=False,
        )
    raise ValueError(f"unsupported database: {parsed.get_backend_name()}")


def create_null_pool_engine(url: str) -> AsyncEngine:
    """An engine without pooling, for one-shot commands (migrations, CLI)."""
    engine = create_async_engine(url, poolclass=NullPool)
    if make_url(url).get_backend_name() == "sqlite":
        _configure_sqlite(engine, 10_000)
    return engine


def _configure_sqlite(engine: AsyncEngine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy (not the driver) decide where transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        # NORMAL is durable across application crashes in WAL mode (the WAL is fsynced
        # at checkpoints); a power loss may roll back the last transactions, never corrupt.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if mode == "IMMEDIATE" else "BEGIN")


class Database:
    """One engine and the ways to open transactions on it."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name  # "sqlite" | "postgresql"

    @classmethod
    def from_url(cls, url: str, *, pool_size: int = 20, busy_timeout_ms: int = 10_000) -> Database:
        return cls(create_engine(url, pool_size=pool_size, busy_timeout_ms=busy_timeout_ms))

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction (BEGIN IMMEDIATE on SQLite)."""
        async with self.engine.begin() as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read-only transaction (a deferred BEGIN on SQLite: readers never queue)."""
        async with self.engine.connect() as conn:
            conn = await conn.execution_options(sqlite_begin="DEFERRED")
            async with conn.begin():
                yield conn

    async def dispose(self) -> None:
        await self.engine.dispose()
