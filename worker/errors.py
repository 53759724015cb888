"""Errors the worker raises when a webhook destination cannot be used.

DeliveryError
 ├── DestinationNotAllowed    the URL or an address it resolves to is not allowed
 └── DestinationUnresolvable  the URL's host did not resolve to any address
"""

from __future__ import annotations

NOT_ALLOWED_MESSAGE = (
    "destination not allowed: the URL must be https and resolve only to public addresses"
)
CREDENTIALS_MESSAGE = (
    "destination not allowed: webhook URLs must not contain credentials; use the signing secret"
)


class DeliveryError(Exception):
    """Root of every error the worker's delivery code raises."""


class DestinationNotAllowed(DeliveryError):
    """Raised when the URL or an address its host resolves to is not allowed."""

    def __init__(self, message: str = NOT_ALLOWED_MESSAGE) -> None:
        # The default message never names the resolved address, because that would reveal
        # the internal network to the admin saving the URL.
        super().__init__(message)
        self.message = message


class DestinationUnresolvable(DeliveryError):
    """Raised when the URL's host did not resolve to any address."""

    def __init__(self, host: str) -> None:
        self.message = f"destination unresolvable: host {host} did not resolve"
        super().__init__(self.message)
        self.host = host
