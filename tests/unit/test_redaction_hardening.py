"""URL redaction for logs and attempts, and the masked form the integration endpoints return."""

from __future__ import annotations

import pytest

from handoff.redaction import mask_url, redact_url

ZAPIER_URL = "https://hooks.zapier.com/hooks/catch/8675309/s3cr3tk/"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (ZAPIER_URL, "https://hooks.zapier.com/…"),
        ("https://hooks.example.com", "https://hooks.example.com/"),
        ("https://hooks.example.com/", "https://hooks.example.com/"),
        ("https://hooks.example.com/?token=abc", "https://hooks.example.com/…"),
        ("https://hooks.example.com/#frag", "https://hooks.example.com/…"),
        ("https://alice:hunter2@hooks.example.com/x", "https://hooks.example.com/…"),
        ("https://hooks.example.com:8443/x", "https://hooks.example.com:8443/…"),
        ("https://[2606:4700::1111]:8443/x", "https://[2606:4700::1111]:8443/…"),
        ("https://[::1/x", "(invalid URL)"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert expected == redact_url(url)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (ZAPIER_URL, "https://hooks.zapier.com/…3tk/"),
        ("https://hooks.example.com/webhooks/solhelps", "https://hooks.example.com/…elps"),
        ("https://hooks.example.com/hook", "https://hooks.example.com/…"),
        ("https://hooks.example.com/12345678", "https://hooks.example.com/…"),
        ("https://hooks.example.com/123456789", "https://hooks.example.com/…6789"),
        ("https://hooks.example.com/", "https://hooks.example.com/"),
        ("https://hooks.example.com/short?token=abcdefghijkl", "https://hooks.example.com/…"),
        (
            "https://alice:hunter2@hooks.example.com/webhooks/solhelps?token=abc",
            "https://hooks.example.com/…elps",
        ),
        ("http://127.0.0.1:9/hook", "http://127.0.0.1:9/…"),
        ("https://[::1/x", "(invalid URL)"),
    ],
)
def test_mask_url(url: str, expected: str) -> None:
    assert expected == mask_url(url)


@pytest.mark.parametrize(
    "url",
    [
        ZAPIER_URL,
        "https://alice:hunter2@hooks.example.com/webhooks/s3cr3tk/solhelps?token=t0k3n#f4ag",
    ],
)
def test_masks_hide_credentials_and_most_of_path(url: str) -> None:
    for shown in (redact_url(url), mask_url(url)):
        assert "s3cr3tk" not in shown
        assert "8675309" not in shown
        assert "hunter2" not in shown
        assert "alice" not in shown
        assert "t0k3n" not in shown
        assert "f4ag" not in shown
