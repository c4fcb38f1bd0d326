"""Shared fixtures. Every storage-touching test runs on SQLite and, when
KASPRO_TEST_DATABASE_URL is set (always in CI), on PostgreSQL too."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text

from storage.db import Database
from storage.migrate import upgrade
from storage.schema import metadata
from wallet.clock import FrozenClock
from wallet.config import Settings, load_settings
from wallet.service import Wallet

PG_URL = os.environ.get("KASPRO_TEST_DATABASE_URL")
PG_SKIP_REASON = "PostgreSQL tests need KASPRO_TEST_DATABASE_URL (set by .ci/run)"

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param(
        "postgres",
        id="postgres",
        marks=pytest.mark.skipif(PG_URL is None, reason=PG_SKIP_REASON),
    ),
]

# Cheap PIN hashing in tests (argon2id still, just less memory).
TEST_SECURITY = {"pin_hash_memory_kib": 1024, "pin_hash_time_cost": 1}


def test_settings(url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {"database_url": url, "security": TEST_SECURITY}
    values.update(overrides)
    return load_settings(**values)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (migrating each time is slow)."""
    path = tmp_path_factory.mktemp("template") / "kaspro.db"
    asyncio.run(upgrade(f"sqlite+aiosqlite:///{path}"))
    return path


_pg_migrated = False


async def _fresh_postgres() -> str:
    global _pg_migrated
    assert PG_URL is not None
    if not _pg_migrated:
        await upgrade(PG_URL)
        _pg_migrated = True
    names = ", ".join(t.name for t in metadata.sorted_tables)
    db = Database(PG_URL, pooled=False)
    await db.write(lambda conn: conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE")))
    await db.dispose()
    return PG_URL


async def fresh_database_url(backend: str, tmp_path: Path, template: Path) -> str:
    if backend == "postgres":
        return await _fresh_postgres()
    target = tmp_path / "kaspro.db"
    shutil.copy(template, target)
    return f"sqlite+aiosqlite:///{target}"


@dataclass
class Env:
    backend: str
    url: str
    settings: Settings
    db: Database
    clock: FrozenClock
    wallet: Wallet


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def env(backend: str, tmp_path: Path, sqlite_template: Path) -> AsyncIterator[Env]:
    url = await fresh_database_url(backend, tmp_path, sqlite_template)
    settings = test_settings(url)
    db = Database.from_url(url, pool_size=5)
    clock = FrozenClock()
    wallet = Wallet(db, settings, clock, secret_key=b"test-secret")
    yield Env(backend, url, settings, db, clock, wallet)
    await db.dispose()
