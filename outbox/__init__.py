"""The product side of handoff: enqueue events in the caller's transaction, relay and sweep them."""

from outbox.enqueue import enqueue_handoff, enqueue_test_event
from outbox.errors import (
    HandoffError,
    InvalidHandoff,
    NotPermitted,
    ThemeNotFound,
    WebhookDisabled,
    WebhookNotConfigured,
)

__all__ = [
    "HandoffError",
    "InvalidHandoff",
    "NotPermitted",
    "ThemeNotFound",
    "WebhookDisabled",
    "WebhookNotConfigured",
    "enqueue_handoff",
    "enqueue_test_event",
]
