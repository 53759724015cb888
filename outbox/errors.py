"""Errors raised to product code when a handoff cannot be enqueued.

HandoffError
 ├── WebhookNotConfigured   no integration saved for the workspace
 ├── WebhookDisabled        integration saved but switched off
 ├── NotPermitted           the actor may not export this assistant's insights
 ├── ThemeNotFound          no such theme (or assistant) in the workspace
 ├── InvalidHandoff         the request itself is invalid (range, sources)
 ├── DeliveryNotFound       no such delivery in the workspace (redeliver)
 └── DeliveryInProgress     an attempt of the delivery is in flight (redeliver)

Each carries `code` and `status`, the API error code and HTTP status it maps to.
"""

from __future__ import annotations


class HandoffError(Exception):
    """Root of every error `enqueue_handoff` and `enqueue_test_event` raise."""

    code = "handoff_error"
    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class WebhookNotConfigured(HandoffError):
    """Raised when the workspace has no webhook integration saved."""

    code = "webhook_not_configured"
    status = 409

    def __init__(self, message: str | None = None) -> None:
        super().__init__(
            message
            or "Webhook handoff is not configured: an Admin or Owner must configure it in "
            "Account -> Integrations."
        )


class WebhookDisabled(HandoffError):
    """Raised when the integration exists but its enabled toggle is off."""

    code = "webhook_disabled"
    status = 409

    def __init__(self, message: str | None = None) -> None:
        super().__init__(
            message
            or "Webhook handoff is configured but disabled: an Admin or Owner can enable it in "
            "Account -> Integrations."
        )


class NotPermitted(HandoffError):
    """Raised when the actor's role or assistant scope does not include export."""

    code = "not_permitted"
    status = 403

    def __init__(self, message: str | None = None) -> None:
        super().__init__(
            message
            or "not permitted: your role or assistant scope does not include insights export "
            "for this assistant; ask an Admin or Owner."
        )


class ThemeNotFound(HandoffError):
    """Raised when the theme does not exist in the workspace or belongs to another assistant."""

    code = "not_found"
    status = 404

    def __init__(self, theme_id: str) -> None:
        super().__init__(f"theme {theme_id!r} not found in this workspace for that assistant")
        self.theme_id = theme_id


class InvalidHandoff(HandoffError):
    """Raised when the handoff request is invalid (range, sources); `field` names the input."""

    code = "validation_failed"
    status = 422

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


class DeliveryNotFound(HandoffError):
    """Raised when a delivery id does not exist in the workspace."""

    code = "not_found"
    status = 404

    def __init__(self, delivery_id: str) -> None:
        super().__init__(f"delivery {delivery_id!r} not found in this workspace")
        self.delivery_id = delivery_id


class DeliveryInProgress(HandoffError):
    """Raised when a redelivery is requested while an attempt of the delivery is in flight."""

    code = "delivery_in_progress"
    status = 409

    def __init__(self, delivery_id: str) -> None:
        super().__init__(
            f"delivery {delivery_id} has an attempt in flight; wait for its outcome, then redeliver"
        )
        self.delivery_id = delivery_id
