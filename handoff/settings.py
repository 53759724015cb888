"""Settings read from the environment once, validated at start, as one typed object."""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_APP_BASE_URL = "https://app.solhelps.com"
DEFAULT_DELIVERY_TIMEOUT_S = 15.0
DEFAULT_RETRY_SCHEDULE_S = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
DEFAULT_RETRY_JITTER = 0.2
DEFAULT_SWEEP_INTERVAL_S = 10.0
DEFAULT_SWEEP_GRACE_S = 20.0
DEFAULT_RETENTION_DAYS = 30
DEFAULT_AUTO_DISABLE_DAYS = 5
DEFAULT_METRICS_HOST = "127.0.0.1"
DEFAULT_WORKER_METRICS_PORT = 9191
DEFAULT_RELAY_METRICS_PORT = 9192
MIN_SECRET_KEY_LENGTH = 32

_TRUE_WORDS = {"true", "1", "yes"}
_FALSE_WORDS = {"false", "0", "no"}


class SettingError(Exception):
    """Raised when an environment variable is missing or invalid.

    The message is one line that names the variable and what to set.
    """

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable


@dataclass(frozen=True)
class Settings:
    """All settings of the service; durations are in seconds."""

    database_url: str | None
    broker_url: str | None
    secret_key: str | None = field(repr=False)
    app_base_url: str = DEFAULT_APP_BASE_URL
    allow_private_targets: bool = False
    delivery_timeout_s: float = DEFAULT_DELIVERY_TIMEOUT_S
    retry_schedule_s: tuple[float, ...] = DEFAULT_RETRY_SCHEDULE_S
    retry_jitter: float = DEFAULT_RETRY_JITTER
    sweep_interval_s: float = DEFAULT_SWEEP_INTERVAL_S
    sweep_grace_s: float = DEFAULT_SWEEP_GRACE_S
    log_format: str = "json"
    resolver_hosts_path: Path | None = None
    data_dir: Path = Path(".handoff-demo")
    # Older values of HANDOFF_SECRET_KEY: they decrypt stored secrets, never encrypt.
    secret_key_previous: tuple[str, ...] = field(default=(), repr=False)
    retention_days: int = DEFAULT_RETENTION_DAYS
    # 0 turns auto-disable off.
    auto_disable_days: int = DEFAULT_AUTO_DISABLE_DAYS
    metrics_host: str = DEFAULT_METRICS_HOST
    # 0 turns that process's metrics server off.
    worker_metrics_port: int = DEFAULT_WORKER_METRICS_PORT
    relay_metrics_port: int = DEFAULT_RELAY_METRICS_PORT

    def __repr__(self) -> str:
        # The URLs can carry passwords and the key encrypts every signing secret.
        return (
            f"Settings(database_url={_mask_url(self.database_url)!r}, "
            f"broker_url={_mask_url(self.broker_url)!r}, secret_key='***', "
            f"delivery_timeout_s={self.delivery_timeout_s}, "
            f"retry_schedule_s={self.retry_schedule_s})"
        )

    @property
    def lease_s(self) -> float:
        """Seconds an attempt may hold a delivery before the sweeper calls it interrupted."""
        return self.delivery_timeout_s + 10.0

    def require(self, *names: str) -> Settings:
        """Raise `SettingError` for the first of `names` that is unset; return self."""
        variables = {
            "database_url": "DATABASE_URL",
            "broker_url": "BROKER_URL",
            "secret_key": "HANDOFF_SECRET_KEY",
        }
        hints = {
            "database_url": "set it to a Postgres URL such as postgresql://user@127.0.0.1:5432/handoff",
            "broker_url": "set it to redis://127.0.0.1:6379/0, unix:///path/to/redis.sock or amqp://…",
            "secret_key": f"set a random string of at least {MIN_SECRET_KEY_LENGTH} characters",
        }
        for name in names:
            if getattr(self, name) is None:
                raise SettingError(variables[name], f"missing; {hints[name]}")
        return self


def _mask_url(url: str | None) -> str | None:
    if url is None or "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


def _text(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _boolean(env: Mapping[str, str], name: str, default: bool) -> bool:
    value = _text(env, name)
    if value is None:
        return default
    if value.lower() in _TRUE_WORDS:
        return True
    if value.lower() in _FALSE_WORDS:
        return False
    raise SettingError(name, f"invalid value {value!r}; set true/false, 1/0 or yes/no")


def _seconds(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    value = _text(env, name)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not (low <= number <= high):
        raise SettingError(
            name, f"invalid value {value!r}; set a number of seconds from {low:g} to {high:g}"
        )
    return number


def _schedule(env: Mapping[str, str], name: str) -> tuple[float, ...]:
    value = _text(env, name)
    if value is None:
        return DEFAULT_RETRY_SCHEDULE_S
    delays: list[float] = []
    for part in value.split(","):
        try:
            delay = float(part.strip())
        except ValueError:
            delay = math.nan
        if not (0 <= delay <= 7 * 86400):
            raise SettingError(
                name,
                f"invalid delay {part.strip()!r}; set comma-separated seconds from 0 to 604800, "
                "such as 5,300,1800",
            )
        delays.append(delay)
    return tuple(delays)


def _integer(
    env: Mapping[str, str], name: str, default: int, low: int, high: int, hint: str
) -> int:
    value = _text(env, name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        number = low - 1
    if not (low <= number <= high):
        raise SettingError(name, f"invalid value {value!r}; set {hint}")
    return number


def _previous_keys(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    value = _text(env, name)
    if value is None:
        return ()
    keys = tuple(part.strip() for part in value.split(","))
    for position, key in enumerate(keys, start=1):
        if len(key) < MIN_SECRET_KEY_LENGTH:
            raise SettingError(
                name,
                f"key {position} is too short ({len(key)} characters); set comma-separated "
                f"older values of HANDOFF_SECRET_KEY, each of at least {MIN_SECRET_KEY_LENGTH}",
            )
    return keys


def _database_url(env: Mapping[str, str], name: str) -> str | None:
    value = _text(env, name)
    if value is None:
        return None
    if not value.startswith(("postgresql://", "postgresql+psycopg://", "postgres://")):
        raise SettingError(name, "invalid URL; set a postgresql:// or postgresql+psycopg:// URL")
    return value


def _broker_url(env: Mapping[str, str], name: str) -> str | None:
    value = _text(env, name)
    if value is None:
        return None
    if not value.startswith(("redis://", "rediss://", "unix://", "amqp://", "amqps://")):
        raise SettingError(name, "invalid URL; set a redis://, rediss://, unix:// or amqp:// URL")
    return value


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting.

    Args:
        env: the variables to read; `os.environ` when omitted.

    Raises:
        SettingError: a variable is set to an invalid value. Missing required
            variables are reported by `Settings.require`, because `demo` needs none.
    """
    env = os.environ if env is None else env

    secret_key = _text(env, "HANDOFF_SECRET_KEY")
    if secret_key is not None and len(secret_key) < MIN_SECRET_KEY_LENGTH:
        raise SettingError(
            "HANDOFF_SECRET_KEY",
            f"too short ({len(secret_key)} characters); set at least {MIN_SECRET_KEY_LENGTH}",
        )

    app_base_url = _text(env, "HANDOFF_APP_BASE_URL") or DEFAULT_APP_BASE_URL
    if not app_base_url.startswith(("https://", "http://")):
        raise SettingError("HANDOFF_APP_BASE_URL", "invalid URL; set an https:// URL")

    jitter = _seconds(env, "HANDOFF_RETRY_JITTER", DEFAULT_RETRY_JITTER, 0.0, 1.0)

    log_format = (_text(env, "HANDOFF_LOG_FORMAT") or "").lower()
    if not log_format:
        log_format = "console" if sys.stdout.isatty() else "json"
    if log_format not in ("json", "console"):
        raise SettingError(
            "HANDOFF_LOG_FORMAT", f"invalid value {log_format!r}; set json or console"
        )

    resolver_hosts = _text(env, "HANDOFF_RESOLVER_HOSTS")
    resolver_hosts_path = Path(resolver_hosts) if resolver_hosts else None
    if resolver_hosts_path is not None and not resolver_hosts_path.is_file():
        raise SettingError(
            "HANDOFF_RESOLVER_HOSTS", f"file {resolver_hosts} not found; set a hosts-format file"
        )

    return Settings(
        database_url=_database_url(env, "DATABASE_URL"),
        broker_url=_broker_url(env, "BROKER_URL"),
        secret_key=secret_key,
        app_base_url=app_base_url.rstrip("/"),
        allow_private_targets=_boolean(env, "HANDOFF_ALLOW_PRIVATE_TARGETS", False),
        delivery_timeout_s=_seconds(
            env, "HANDOFF_DELIVERY_TIMEOUT", DEFAULT_DELIVERY_TIMEOUT_S, 1.0, 60.0
        ),
        retry_schedule_s=_schedule(env, "HANDOFF_RETRY_SCHEDULE"),
        retry_jitter=jitter,
        sweep_interval_s=_seconds(
            env, "HANDOFF_SWEEP_INTERVAL", DEFAULT_SWEEP_INTERVAL_S, 0.05, 3600.0
        ),
        sweep_grace_s=_seconds(env, "HANDOFF_SWEEP_GRACE", DEFAULT_SWEEP_GRACE_S, 0.0, 3600.0),
        log_format=log_format,
        resolver_hosts_path=resolver_hosts_path,
        data_dir=Path(_text(env, "HANDOFF_DATA_DIR") or ".handoff-demo"),
        secret_key_previous=_previous_keys(env, "HANDOFF_SECRET_KEY_PREVIOUS"),
        retention_days=_integer(
            env,
            "HANDOFF_RETENTION_DAYS",
            DEFAULT_RETENTION_DAYS,
            1,
            3650,
            "a whole number of days from 1 to 3650",
        ),
        auto_disable_days=_integer(
            env,
            "HANDOFF_AUTO_DISABLE_DAYS",
            DEFAULT_AUTO_DISABLE_DAYS,
            0,
            365,
            "a whole number of days from 0 to 365 (0 turns auto-disable off)",
        ),
        metrics_host=_text(env, "HANDOFF_METRICS_HOST") or DEFAULT_METRICS_HOST,
        worker_metrics_port=_integer(
            env,
            "HANDOFF_WORKER_METRICS_PORT",
            DEFAULT_WORKER_METRICS_PORT,
            0,
            65535,
            "a TCP port from 1 to 65535, or 0 for no metrics server",
        ),
        relay_metrics_port=_integer(
            env,
            "HANDOFF_RELAY_METRICS_PORT",
            DEFAULT_RELAY_METRICS_PORT,
            0,
            65535,
            "a TCP port from 1 to 65535, or 0 for no metrics server",
        ),
    )


_current: Settings | None = None


def current_settings() -> Settings:
    """Return the settings of this process, read from the environment on first use."""
    global _current
    if _current is None:
        _current = load_settings()
    return _current


def use_settings(settings: Settings) -> None:
    """Make `settings` the ones `current_settings` returns (commands and tests call this)."""
    global _current
    _current = settings
