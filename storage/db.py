"""Transactions on SQLite (embedded default) and PostgreSQL.

The wallet core is written as plain functions of a SQLAlchemy ``Connection`` that run
inside one transaction: ``await db.write(fn, *args)`` / ``await db.read(fn, *args)``.

- PostgreSQL: the async engine (asyncpg) runs ``fn`` through ``run_sync``: every
  statement is still an asyncpg round trip on the event loop, without a thread.
- SQLite: work runs on threads with the stdlib driver, one thread hop per transaction.
  (An async driver for SQLite hops to its thread for every cursor call — about 30 hops
  per money movement — which measured several times slower.) WAL mode, a busy timeout,
  ``BEGIN IMMEDIATE`` for writes (no lock-upgrade deadlocks). SQLite has one writer at a
  time, so this process's writes go through one writer thread with *group commit*:
  the writes queued while the previous batch ran are run together in one transaction,
  each inside its own SAVEPOINT (a failing one rolls back alone), and every caller is
  answered only after the batch's COMMIT. Readers run concurrently (WAL).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

from sqlalchemy import Connection, Engine, event, text
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

P = ParamSpec("P")
T = TypeVar("T")
_Write = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any], "asyncio.Future[Any]"]
# Most writes one SQLite transaction commits together.
GROUP_COMMIT_MAX = 64


def sqlite_sync_url(url: str | URL) -> URL:
    return make_url(url).set(drivername="sqlite+pysqlite")


def backend_of(url: str) -> str:
    return make_url(url).get_backend_name()


def _sqlite_engine(url: str, *, pool_size: int, busy_timeout_ms: int, pooled: bool) -> Engine:
    parsed = sqlite_sync_url(url)
    if parsed.database in (None, "", ":memory:"):
        raise ValueError("use a SQLite file, not :memory: (state must survive a restart)")
    kwargs: dict[str, Any] = (
        {"pool_size": pool_size, "max_overflow": 0} if pooled else {"poolclass": NullPool}
    )
    engine = create_sync_engine(
        parsed,
        connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000},
        **kwargs,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy (not the driver) decide where transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        # NORMAL is durable across application crashes in WAL mode; a power loss may
        # lose the last commits but never corrupts the file.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if mode == "IMMEDIATE" else "BEGIN")

    return engine


class Database:
    """One database and the ways to run a transaction on it."""

    def __init__(
        self, url: str, *, pool_size: int = 20, busy_timeout_ms: int = 10_000, pooled: bool = True
    ) -> None:
        self.url = url
        self.dialect = backend_of(url)
        self._async: AsyncEngine | None = None
        self._sync: Engine | None = None
        self._pending: list[_Write] = []
        self._draining = False
        self._writer: ThreadPoolExecutor | None = None
        if self.dialect == "sqlite":
            self._sync = _sqlite_engine(
                url, pool_size=pool_size, busy_timeout_ms=busy_timeout_ms, pooled=pooled
            )
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
        elif self.dialect == "postgresql":
            kwargs: dict[str, Any] = (
                {"pool_size": pool_size, "max_overflow": pool_size}
                if pooled
                else {"poolclass": NullPool}
            )
            self._async = create_async_engine(url, **kwargs)
        else:
            raise ValueError(f"unsupported database: {self.dialect}")

    @classmethod
    def from_url(cls, url: str, *, pool_size: int = 20, busy_timeout_ms: int = 10_000) -> Database:
        return cls(url, pool_size=pool_size, busy_timeout_ms=busy_timeout_ms)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    async def write(
        self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run ``fn(conn, …)`` in one write transaction; commit when it returns."""
        if self._async is not None:
            async with self._async.begin() as aconn:
                return await aconn.run_sync(fn, *args, **kwargs)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((fn, args, kwargs, future))
        if not self._draining:
            self._draining = True
            asyncio.get_running_loop().create_task(self._drain())
        return cast(T, await future)

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch, self._pending = (
                    self._pending[:GROUP_COMMIT_MAX],
                    self._pending[GROUP_COMMIT_MAX:],
                )
                try:
                    outcomes = await loop.run_in_executor(self._writer, self._run_batch, batch)
                except BaseException as exc:  # delivered to every caller
                    outcomes = [(False, exc)] * len(batch)
                for (*_, future), (ok, value) in zip(batch, outcomes, strict=True):
                    if future.done():
                        continue  # the caller gave up waiting; the work is committed
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(value)
        finally:
            self._draining = False

    def _run_batch(self, batch: list[_Write]) -> list[tuple[bool, Any]]:
        """One transaction for the whole batch; one SAVEPOINT per write."""
        assert self._sync is not None
        outcomes: list[tuple[bool, Any]] = []
        with self._sync.connect() as conn:
            conn = conn.execution_options(sqlite_begin="IMMEDIATE")
            with conn.begin():
                if len(batch) == 1:
                    fn, args, kwargs, _ = batch[0]
                    try:
                        outcomes.append((True, fn(conn, *args, **kwargs)))
                    except Exception as exc:  # handed to the caller
                        conn.rollback()
                        outcomes.append((False, exc))
                    return outcomes
                for fn, args, kwargs, _ in batch:
                    try:
                        with conn.begin_nested():
                            outcomes.append((True, fn(conn, *args, **kwargs)))
                    except Exception as exc:  # handed to its caller
                        outcomes.append((False, exc))
        return outcomes

    async def read(
        self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run ``fn(conn, …)`` in a read transaction (on SQLite, readers never queue)."""
        if self._async is not None:
            async with self._async.connect() as aconn:
                return await aconn.run_sync(fn, *args, **kwargs)
        return await asyncio.to_thread(self._run_sqlite, "DEFERRED", fn, args, kwargs)

    def _run_sqlite(
        self, mode: str, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> T:
        assert self._sync is not None
        with self._sync.connect() as conn:
            conn = conn.execution_options(sqlite_begin=mode)
            with conn.begin():
                return fn(conn, *args, **kwargs)

    @contextlib.asynccontextmanager
    async def chat_lock(self, name: str) -> AsyncIterator[None]:
        """Hold a lock named ``name`` across transactions: a PostgreSQL session advisory
        lock on a connection of its own, so several workers take turns. SQLite serves one
        process, whose own locks suffice."""
        if self._async is None:
            yield
            return
        async with self._async.connect() as conn:
            key = {"n": name}
            await conn.execute(text("SELECT pg_advisory_lock(hashtextextended(:n, 1))"), key)
            await conn.commit()
            try:
                yield
            finally:
                await conn.execute(text("SELECT pg_advisory_unlock(hashtextextended(:n, 1))"), key)
                await conn.commit()

    async def dispose(self) -> None:
        if self._writer is not None:
            self._writer.shutdown(wait=True)
        if self._async is not None:
            await self._async.dispose()
        if self._sync is not None:
            self._sync.dispose()
