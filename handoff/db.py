"""Database engines: one place that turns a Postgres URL into a SQLAlchemy engine on psycopg 3."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine


def sqlalchemy_url(url: str) -> str:
    """Return `url` with the psycopg 3 driver named, as SQLAlchemy needs it."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    raise ValueError(f"not a Postgres URL: {url.split('://', 1)[0]}://…")


def libpq_url(url: str) -> str:
    """Return `url` in the plain form that psycopg's own `connect` accepts."""
    return "postgresql://" + sqlalchemy_url(url)[len("postgresql+psycopg://") :]


def make_engine(url: str, pool_size: int = 5, max_overflow: int = 5) -> Engine:
    """Create an engine; `pool_pre_ping` lets a process ride over a Postgres restart."""
    return create_engine(
        sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=True,
        pool_recycle=1800,
    )
