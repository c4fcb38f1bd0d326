"""Storage: SQLAlchemy 2.0 tables, engine/session setup, Alembic migrations."""
