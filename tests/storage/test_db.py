"""Storage: migrations, SQLite settings, and group commit."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Column, Connection, Integer, MetaData, Table, func, select, text

from storage.db import Database
from storage.migrate import current_revision
from storage.schema import metadata
from tests.conftest import Env

scratch = Table("scratch", MetaData(), Column("n", Integer, primary_key=True))


def _schema_diff(conn: Connection) -> list[object]:
    ctx = MigrationContext.configure(conn, opts={"compare_type": True})
    return list(compare_metadata(ctx, metadata))


async def test_migrations_build_exactly_the_declared_schema(env: Env) -> None:
    assert await env.db.read(current_revision) == "0004"
    assert await env.db.read(_schema_diff) == []


async def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/x.db")
    try:
        mode = await db.read(lambda c: c.exec_driver_sql("PRAGMA journal_mode").scalar())
        timeout = await db.read(lambda c: c.exec_driver_sql("PRAGMA busy_timeout").scalar())
    finally:
        await db.dispose()
    assert (mode, timeout) == ("wal", 10_000)


def test_in_memory_sqlite_is_refused() -> None:
    with pytest.raises(ValueError, match="file"):
        Database("sqlite:///:memory:")


async def test_concurrent_writes_commit_or_fail_each_on_their_own(env: Env) -> None:
    await env.db.write(lambda c: scratch.create(c))

    def insert(conn: Connection, n: int) -> int:
        conn.execute(scratch.insert().values(n=n))
        if n % 3 == 0:
            raise RuntimeError(f"write {n} fails after writing")
        return n

    results = await asyncio.gather(
        *(env.db.write(insert, n) for n in range(1, 61)), return_exceptions=True
    )
    failed = [r for r in results if isinstance(r, RuntimeError)]
    assert len(failed) == 20
    stored = await env.db.read(lambda c: [r[0] for r in c.execute(select(scratch.c.n))])
    assert sorted(stored) == [n for n in range(1, 61) if n % 3]
    assert await env.db.read(lambda c: c.scalar(select(func.count()).select_from(scratch))) == 40
    await env.db.write(lambda c: c.execute(text("DROP TABLE scratch")))
