from pathlib import Path

import pytest

from handoff.settings import DEFAULT_RETRY_SCHEDULE_S, SettingError, load_settings

KEY = "k" * 32


def test_defaults_when_nothing_set() -> None:
    settings = load_settings({})
    assert None is settings.database_url
    assert DEFAULT_RETRY_SCHEDULE_S == settings.retry_schedule_s
    assert 15.0 == settings.delivery_timeout_s
    assert False is settings.allow_private_targets


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DATABASE_URL", "mysql://x"),
        ("BROKER_URL", "kafka://x"),
        ("HANDOFF_SECRET_KEY", "short"),
        ("HANDOFF_DELIVERY_TIMEOUT", "0.5"),
        ("HANDOFF_DELIVERY_TIMEOUT", "61"),
        ("HANDOFF_DELIVERY_TIMEOUT", "fast"),
        ("HANDOFF_ALLOW_PRIVATE_TARGETS", "maybe"),
        ("HANDOFF_RETRY_SCHEDULE", "5,soon"),
        ("HANDOFF_RETRY_JITTER", "2"),
        ("HANDOFF_LOG_FORMAT", "xml"),
        ("HANDOFF_RESOLVER_HOSTS", "/nonexistent/hosts"),
    ],
)
def test_invalid_setting_names_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingError) as caught:
        load_settings({variable: value})
    assert variable == caught.value.variable
    assert str(caught.value).startswith(f"{variable}: ")
    assert "\n" not in str(caught.value)


def test_booleans_accept_words() -> None:
    for word, expected in [("yes", True), ("1", True), ("TRUE", True), ("no", False), ("0", False)]:
        settings = load_settings({"HANDOFF_ALLOW_PRIVATE_TARGETS": word})
        assert expected is settings.allow_private_targets


def test_schedule_and_fractional_timeout() -> None:
    settings = load_settings(
        {"HANDOFF_RETRY_SCHEDULE": "1, 2.5,3", "HANDOFF_DELIVERY_TIMEOUT": "1.5"}
    )
    assert (1.0, 2.5, 3.0) == settings.retry_schedule_s
    assert 1.5 == settings.delivery_timeout_s


def test_require_names_missing_variable() -> None:
    settings = load_settings({"DATABASE_URL": "postgresql://h/db", "HANDOFF_SECRET_KEY": KEY})
    with pytest.raises(SettingError) as caught:
        settings.require("database_url", "broker_url", "secret_key")
    assert "BROKER_URL" == caught.value.variable


def test_repr_masks_secrets(tmp_path: Path) -> None:
    settings = load_settings(
        {"DATABASE_URL": "postgresql://u:hunter2@h/db", "HANDOFF_SECRET_KEY": KEY}
    )
    assert "hunter2" not in repr(settings)
    assert KEY not in repr(settings)
