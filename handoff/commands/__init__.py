"""Subcommands of the `handoff` CLI, one module per group, and the start-up they share."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine

from handoff.db import make_engine
from handoff.logging import configure_logging
from handoff.settings import SettingError, Settings, load_settings, use_settings


class CommandError(Exception):
    """Raised by a command to stop with one line on stderr and exit code 1."""


def start_command(*required: str) -> Settings:
    """Read and validate the settings, make them current and set up logging.

    Args:
        required: names of `Settings` fields the command cannot run without, such as
            "database_url".

    Raises:
        SettingError: a variable is invalid, or one of `required` is unset.
    """
    settings = load_settings().require(*required)
    use_settings(settings)
    configure_logging(settings.log_format)
    return settings


@contextmanager
def database(settings: Settings) -> Iterator[Engine]:
    """Yield an engine for `settings.database_url` with a small pool, disposed afterwards."""
    if settings.database_url is None:
        raise SettingError("DATABASE_URL", "missing; set it to a Postgres URL")
    engine = make_engine(settings.database_url, pool_size=1, max_overflow=1)
    try:
        yield engine
    finally:
        engine.dispose()
