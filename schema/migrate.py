"""Upgrade a database to the latest schema with the migrations shipped inside this package."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

# Serializes concurrent `handoff migrate` runs (several containers starting at once).
_MIGRATION_LOCK_KEY = 0x68616E646F6666


def alembic_config() -> Config:
    """Build an Alembic config that finds the migrations from any working directory."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply every migration up to `revision`, holding an advisory lock meanwhile."""
    config = alembic_config()
    with engine.begin() as connection:
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK_KEY})")
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
