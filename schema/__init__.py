"""Database schema: SQLAlchemy Core tables and the Alembic migrations that create them."""

from schema.tables import metadata

__all__ = ["metadata"]
