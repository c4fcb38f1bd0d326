"""Alembic environment. Migrations run on a connection handed in by storage.migrate
(``kaspro db upgrade``); the plain ``alembic`` command is not used."""

from __future__ import annotations

from alembic import context

from storage.schema import metadata

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise SystemExit("run migrations with `kaspro db upgrade`")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
