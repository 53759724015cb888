"""Worker process set-up, imported by `dramatiq worker.boot` in each worker process.

`handoff worker` validates the settings before it starts Dramatiq, so a setting error here
means the environment changed in between. It still ends the process with one line.
"""

from __future__ import annotations

import sys

from handoff.broker import make_broker
from handoff.db import make_engine
from handoff.logging import configure_logging
from handoff.secret_box import SecretBox
from handoff.settings import SettingError, load_settings, use_settings
from worker.actors import declare_deliver_actor
from worker.delivery import DeliveryWorker
from worker.resolver import resolver_from_settings
from worker.transport import make_http_client

try:
    settings = load_settings().require("database_url", "broker_url", "secret_key")
except SettingError as error:
    print(error, file=sys.stderr)
    raise SystemExit(2) from None

use_settings(settings)
configure_logging(settings.log_format)
broker = make_broker(str(settings.broker_url), time_limit_s=settings.lease_s + 30)
# Connections open on demand, so the pool keeps one per thread that ever needed one, up to
# 64. Keep the limit in pool_size, not max_overflow: QueuePool closes an overflow connection
# as soon as it is returned, so with a small pool every thread past it opened a new Postgres
# connection (a new backend process) for each statement.
engine = make_engine(str(settings.database_url), pool_size=64, max_overflow=0, custom_plans=True)
client = make_http_client(
    resolver=resolver_from_settings(settings), allow_private=settings.allow_private_targets
)
deliver = declare_deliver_actor(
    broker, DeliveryWorker(engine, settings, client, SecretBox.from_settings(settings))
)
