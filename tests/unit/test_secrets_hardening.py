"""Key rotation of the secret box and the HANDOFF_SECRET_KEY_PREVIOUS setting; no I/O."""

from __future__ import annotations

import pytest

from handoff.secret_box import SecretBox, SecretBoxError
from handoff.settings import SettingError, load_settings

OLD_KEY = "old-key-0123456789-abcdefghijklmnopqrstuv"
OLDER_KEY = "older-key-0123456789-abcdefghijklmnopqrstu"
NEW_KEY = "new-key-0123456789-abcdefghijklmnopqrstuv"
SECRET = "whsec_c2VjcmV0LWF0LXJlc3Q="


def test_previous_key_decrypts_old_secret() -> None:
    stored = SecretBox(OLD_KEY).encrypt(SECRET)
    box = SecretBox(NEW_KEY, [OLDER_KEY, OLD_KEY])
    assert SECRET == box.decrypt(stored)


def test_new_key_alone_cannot_decrypt_old_secret() -> None:
    stored = SecretBox(OLD_KEY).encrypt(SECRET)
    with pytest.raises(SecretBoxError) as caught:
        SecretBox(NEW_KEY).decrypt(stored)
    assert "HANDOFF_SECRET_KEY_PREVIOUS" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_previous_key_never_encrypts() -> None:
    box = SecretBox(NEW_KEY, [OLD_KEY])
    stored = box.encrypt(SECRET)
    assert SECRET == SecretBox(NEW_KEY).decrypt(stored)
    with pytest.raises(SecretBoxError):
        SecretBox(OLD_KEY).decrypt(stored)


def test_reencrypt_moves_secret_to_current_key() -> None:
    stored = SecretBox(OLD_KEY).encrypt(SECRET)
    box = SecretBox(NEW_KEY, [OLD_KEY])

    rewritten = box.reencrypt(stored)

    assert box.is_current(rewritten)
    assert not box.is_current(stored)
    assert SECRET == SecretBox(NEW_KEY).decrypt(rewritten)


def test_reencrypt_unknown_key_raises() -> None:
    stored = SecretBox(OLDER_KEY).encrypt(SECRET)
    with pytest.raises(SecretBoxError):
        SecretBox(NEW_KEY, [OLD_KEY]).reencrypt(stored)


def test_altered_ciphertext_raises() -> None:
    stored = bytearray(SecretBox(NEW_KEY).encrypt(SECRET))
    stored[-5] = ord("A") if stored[-5] != ord("A") else ord("B")
    with pytest.raises(SecretBoxError):
        SecretBox(NEW_KEY).decrypt(bytes(stored))


def test_repr_hides_keys() -> None:
    shown = repr(SecretBox(NEW_KEY, [OLD_KEY]))
    assert NEW_KEY not in shown
    assert OLD_KEY not in shown


def test_previous_keys_setting_is_comma_separated() -> None:
    settings = load_settings(
        {"HANDOFF_SECRET_KEY": NEW_KEY, "HANDOFF_SECRET_KEY_PREVIOUS": f" {OLD_KEY} ,{OLDER_KEY}"}
    )
    assert (OLD_KEY, OLDER_KEY) == settings.secret_key_previous


def test_previous_keys_default_to_none() -> None:
    assert () == load_settings({"HANDOFF_SECRET_KEY": NEW_KEY}).secret_key_previous


@pytest.mark.parametrize("value", ["short", f"{OLD_KEY},short", f"{OLD_KEY},", f",{OLD_KEY}"])
def test_short_previous_key_names_variable(value: str) -> None:
    with pytest.raises(SettingError) as caught:
        load_settings({"HANDOFF_SECRET_KEY": NEW_KEY, "HANDOFF_SECRET_KEY_PREVIOUS": value})
    assert "HANDOFF_SECRET_KEY_PREVIOUS" == caught.value.variable
    assert str(caught.value).startswith("HANDOFF_SECRET_KEY_PREVIOUS: ")
    assert "at least 32" in str(caught.value)
    assert "\n" not in str(caught.value)
    assert OLD_KEY not in str(caught.value)


def test_previous_keys_not_in_settings_repr() -> None:
    settings = load_settings(
        {"HANDOFF_SECRET_KEY": NEW_KEY, "HANDOFF_SECRET_KEY_PREVIOUS": OLD_KEY}
    )
    assert OLD_KEY not in repr(settings)


def test_box_from_settings_reads_previous_keys() -> None:
    settings = load_settings(
        {"HANDOFF_SECRET_KEY": NEW_KEY, "HANDOFF_SECRET_KEY_PREVIOUS": OLD_KEY}
    )
    stored = SecretBox(OLD_KEY).encrypt(SECRET)
    assert SECRET == SecretBox.from_settings(settings).decrypt(stored)


def test_box_from_settings_requires_key() -> None:
    with pytest.raises(SettingError) as caught:
        SecretBox.from_settings(load_settings({}))
    assert "HANDOFF_SECRET_KEY" == caught.value.variable
