"""Encryption of signing secrets at rest, keyed by `HANDOFF_SECRET_KEY` and its previous values."""

from __future__ import annotations

import base64
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from handoff.settings import Settings

# Changing this label makes every stored secret unreadable, like changing the key.
_KDF_INFO = b"solhelps-webhook-handoff signing-secret encryption v1"


class SecretBoxError(Exception):
    """Raised when a stored secret cannot be decrypted with the current or a previous key."""


def _fernet(secret_key: str) -> Fernet:
    # HKDF turns any string of 32+ characters into the 32-byte key Fernet needs.
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_KDF_INFO).derive(
        secret_key.encode("utf-8")
    )
    return Fernet(base64.urlsafe_b64encode(derived))


class SecretBox:
    """Encrypts signing secrets with the current key and decrypts with it or a previous one.

    Previous keys (`HANDOFF_SECRET_KEY_PREVIOUS`) only decrypt. They let every process keep
    reading secrets saved under an older key while `handoff secrets reencrypt` rewrites them.
    """

    def __init__(self, secret_key: str, previous_keys: Sequence[str] = ()) -> None:
        self._current = _fernet(secret_key)
        self._fernet = MultiFernet([self._current, *(_fernet(key) for key in previous_keys)])

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        """Build the box of `settings`: `HANDOFF_SECRET_KEY` and any previous keys.

        Raises:
            SettingError: `HANDOFF_SECRET_KEY` is not set.
        """
        key = settings.require("secret_key").secret_key
        assert key is not None  # require() raised otherwise
        return cls(key, settings.secret_key_previous)

    def __repr__(self) -> str:
        return "SecretBox(key='***')"

    def encrypt(self, secret: str) -> bytes:
        """Return the ciphertext of `secret`, made with the current key."""
        return self._current.encrypt(secret.encode("utf-8"))

    def decrypt(self, ciphertext: bytes) -> str:
        """Return the secret in `ciphertext`, made with the current or a previous key.

        Raises:
            SecretBoxError: no configured key made the ciphertext, or it was altered.
        """
        try:
            return self._fernet.decrypt(bytes(ciphertext)).decode("utf-8")
        except InvalidToken as error:
            raise SecretBoxError(_UNREADABLE) from error

    def is_current(self, ciphertext: bytes) -> bool:
        """Tell whether `ciphertext` was made with the current key."""
        try:
            self._current.decrypt(bytes(ciphertext))
        except InvalidToken:
            return False
        return True

    def reencrypt(self, ciphertext: bytes) -> bytes:
        """Return `ciphertext` decrypted with any configured key and encrypted with the current one.

        Raises:
            SecretBoxError: no configured key made the ciphertext, or it was altered.
        """
        try:
            return self._fernet.rotate(bytes(ciphertext))
        except InvalidToken as error:
            raise SecretBoxError(_UNREADABLE) from error


_UNREADABLE = (
    "a stored signing secret cannot be decrypted with HANDOFF_SECRET_KEY or any key in "
    "HANDOFF_SECRET_KEY_PREVIOUS; add the key it was saved with to HANDOFF_SECRET_KEY_PREVIOUS"
)
