"""Bearer tokens: generated once, shown once, stored only as their SHA-256 hash."""

from __future__ import annotations

import hashlib
import secrets

TOKEN_PREFIX = "sh_"  # noqa: S105 - a public prefix, not a secret


def new_token() -> str:
    """Generate a random bearer token: `sh_` and 32 random bytes in URL-safe base64."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> bytes:
    """Return the SHA-256 digest of `token`, the only form in which tokens are stored.

    A plain hash suffices because tokens carry 256 random bits, so there is nothing to
    guess, and lookups by hash stay one indexed query.
    """
    return hashlib.sha256(token.encode("utf-8")).digest()
