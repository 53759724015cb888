"""Settings of operations: retention, auto-disable and the metrics servers."""

from __future__ import annotations

import pytest

from handoff.settings import SettingError, load_settings


def test_defaults() -> None:
    settings = load_settings({})

    assert 30 == settings.retention_days
    assert 5 == settings.auto_disable_days
    assert "127.0.0.1" == settings.metrics_host
    assert 9191 == settings.worker_metrics_port
    assert 9192 == settings.relay_metrics_port


def test_values_are_read() -> None:
    settings = load_settings(
        {
            "HANDOFF_RETENTION_DAYS": "7",
            "HANDOFF_AUTO_DISABLE_DAYS": "0",
            "HANDOFF_METRICS_HOST": "::1",
            "HANDOFF_WORKER_METRICS_PORT": "0",
            "HANDOFF_RELAY_METRICS_PORT": "9300",
        }
    )

    assert 7 == settings.retention_days
    assert 0 == settings.auto_disable_days
    assert "::1" == settings.metrics_host
    assert 0 == settings.worker_metrics_port
    assert 9300 == settings.relay_metrics_port


@pytest.mark.parametrize(
    ("variable", "value", "hint"),
    [
        ("HANDOFF_RETENTION_DAYS", "0", "a whole number of days from 1 to 3650"),
        ("HANDOFF_RETENTION_DAYS", "2.5", "a whole number of days from 1 to 3650"),
        ("HANDOFF_AUTO_DISABLE_DAYS", "-1", "a whole number of days from 0 to 365"),
        ("HANDOFF_AUTO_DISABLE_DAYS", "week", "a whole number of days from 0 to 365"),
        ("HANDOFF_WORKER_METRICS_PORT", "70000", "a TCP port from 1 to 65535"),
        ("HANDOFF_RELAY_METRICS_PORT", "http", "a TCP port from 1 to 65535"),
    ],
)
def test_invalid_value_names_variable(variable: str, value: str, hint: str) -> None:
    with pytest.raises(SettingError) as raised:
        load_settings({variable: value})

    assert variable == raised.value.variable
    assert str(raised.value).startswith(f"{variable}: invalid value {value!r}; set {hint}")
