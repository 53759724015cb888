"""Encryption of signing secrets at rest, keyed by `HANDOFF_SECRET_KEY`."""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

# Changing this label makes every stored secret unreadable, like changing the key.
_KDF_INFO = b"solhelps-webhook-handoff signing-secret encryption v1"


class SecretBoxError(Exception):
    """Raised when a stored secret cannot be decrypted with the configured key."""


class SecretBox:
    """Encrypts and decrypts signing secrets with a key derived from `HANDOFF_SECRET_KEY`."""

    def __init__(self, secret_key: str) -> None:
        # HKDF turns any string of 32+ characters into the 32-byte key Fernet needs.
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_KDF_INFO).derive(
            secret_key.encode("utf-8")
        )
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))

    def __repr__(self) -> str:
        return "SecretBox(key='***')"

    def encrypt(self, secret: str) -> bytes:
        """Return the ciphertext of `secret`."""
        return self._fernet.encrypt(secret.encode("utf-8"))

    def decrypt(self, ciphertext: bytes) -> str:
        """Return the secret in `ciphertext`.

        Raises:
            SecretBoxError: the ciphertext was made with another key or was altered.
        """
        try:
            return self._fernet.decrypt(bytes(ciphertext)).decode("utf-8")
        except InvalidToken as error:
            raise SecretBoxError(
                "a stored signing secret cannot be decrypted; HANDOFF_SECRET_KEY differs from "
                "the key it was saved with"
            ) from error
