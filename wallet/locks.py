"""Named locks inside a transaction: a PostgreSQL advisory lock; on SQLite the write
transaction (BEGIN IMMEDIATE) already excludes every other writer."""

from __future__ import annotations

from sqlalchemy import Connection, text


def xact_lock(conn: Connection, name: str) -> None:
    """Hold a lock named ``name`` until the transaction ends."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:n, 0))"), {"n": name})
