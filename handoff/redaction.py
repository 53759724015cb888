"""Redaction of webhook URLs: the path of a Zapier hook is a credential."""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit

HIDDEN = "…"
# A path shorter than this (slashes aside) is hidden entirely, because its last 4
# characters would be half of it or more. The signing secret mask uses the same rule.
MIN_PATH_LENGTH_TO_SHOW_TAIL = 9
SHOWN_PATH_TAIL = 4


def _split(url: str) -> tuple[SplitResult, str] | None:
    """Return the parts of `url` and its `host[:port]`; None when `url` cannot be parsed."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return None
    if ":" in host:
        host = f"[{host}]"
    return parts, f"{host}:{port}" if port else host


def redact_url(url: str) -> str:
    """Return scheme, host and port of `url` with its path, query and credentials hidden.

    This is the form logs, stored attempts and the delivery history use.

    >>> redact_url("https://hooks.zapier.com/hooks/catch/123/abc/?x=1")
    'https://hooks.zapier.com/…'
    """
    split = _split(url)
    if split is None:
        return "(invalid URL)"
    parts, netloc = split
    hidden = "/" + HIDDEN if (parts.path not in ("", "/") or parts.query or parts.fragment) else "/"
    return f"{parts.scheme}://{netloc}{hidden}"


def mask_url(url: str) -> str:
    """Return the form in which a saved webhook URL is shown to the workspace's admins.

    Scheme, host and port stay, so the admin can tell which receiver is configured, and
    the last 4 characters of a path longer than 8 characters stay too, so the admin can
    distinguish two hooks of the same service. Credentials, the rest of the path, the query and the
    fragment are hidden.

    >>> mask_url("https://hooks.zapier.com/hooks/catch/123456/abcdef/")
    'https://hooks.zapier.com/…def/'
    """
    split = _split(url)
    if split is None:
        return "(invalid URL)"
    parts, netloc = split
    redacted = redact_url(url)
    if len(parts.path.strip("/")) < MIN_PATH_LENGTH_TO_SHOW_TAIL:
        return redacted
    return f"{parts.scheme}://{netloc}/{HIDDEN}{parts.path[-SHOWN_PATH_TAIL:]}"
