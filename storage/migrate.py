"""Running Alembic migrations from code (``kaspro db upgrade``, tests, ``kaspro chat``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.db import create_null_pool_engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


async def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` to ``revision``."""
    engine = create_null_pool_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade_sync, url, revision)
    finally:
        await engine.dispose()


def _upgrade_sync(sync_conn: object, url: str, revision: str) -> None:
    cfg = alembic_config(url)
    cfg.attributes["connection"] = sync_conn
    command.upgrade(cfg, revision)


async def current_revision(conn: AsyncConnection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    def _get(sync_conn: object) -> str | None:
        return MigrationContext.configure(sync_conn).get_current_revision()  # type: ignore[arg-type]

    return await conn.run_sync(_get)


def upgrade_blocking(url: str) -> None:
    asyncio.run(upgrade(url))
