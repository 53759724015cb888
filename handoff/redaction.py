"""Redaction of webhook URLs: the path of a Zapier hook is a credential."""

from __future__ import annotations

from urllib.parse import urlsplit


def redact_url(url: str) -> str:
    """Return scheme, host and port of `url` with its path, query and credentials hidden.

    >>> redact_url("https://hooks.zapier.com/hooks/catch/123/abc/?x=1")
    'https://hooks.zapier.com/…'
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "(invalid URL)"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port else host
    hidden = "/…" if (parts.path not in ("", "/") or parts.query or parts.fragment) else "/"
    return f"{parts.scheme}://{netloc}{hidden}"
