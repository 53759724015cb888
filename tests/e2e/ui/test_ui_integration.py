"""Account -> Integrations -> Webhook Handoff in a browser: configure, test, toggle, rotate."""

from __future__ import annotations

import hashlib
import hmac
import json

from playwright.sync_api import Page, expect

from tests.e2e.ui.conftest import Site, csrf_token_of, save_screenshot
from tests.receivers import Respond


def verify_signature(secret: str, headers: dict[str, str], body: bytes) -> bool:
    timestamp = headers["x-sol-timestamp"]
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    offered = headers["x-sol-signature"].split(" ")
    return any(hmac.compare_digest(f"v1={digest.hexdigest()}", entry) for entry in offered)


def open_webhook_page(page: Page) -> None:
    page.get_by_role("link", name="Integrations").click()
    page.get_by_role("link", name="Webhook Handoff").click()
    expect(page.get_by_role("heading", name="Webhook Handoff", level=1)).to_be_visible()


def test_configure_then_test_send_succeeds(site: Site) -> None:
    page = site.sign_in(site.admin_token)
    page.get_by_role("link", name="Integrations").click()
    save_screenshot(page, "integrations")
    page.get_by_role("link", name="Webhook Handoff").click()
    save_screenshot(page, "webhook-not-configured")

    page.get_by_label("Zapier").check()
    page.get_by_label("Webhook URL").fill(site.receiver.url)
    page.get_by_role("button", name="Generate a secret and save").click()

    expect(page.get_by_text("Configuration saved.")).to_be_visible()
    secret = page.get_by_label("Signing secret", exact=True).input_value()
    assert secret.startswith("whsec_")
    # A loopback URL is accepted under HANDOFF_ALLOW_PRIVATE_TARGETS, with Zapier's warning.
    expect(page.get_by_text("is not a Zapier Catch Hook URL").first).to_be_visible()

    page.get_by_role("button", name="Send test webhook").click()
    result = page.locator("#test-result")
    expect(result).to_contain_text("accepted by Zapier")
    expect(result).to_contain_text("Status code: 200")
    expect(result).to_contain_text(" ms")
    expect(result).to_contain_text("check that this test ran")
    save_screenshot(page, "webhook-test-sent")

    requests = site.receiver.wait_for(1)
    assert 1 == len(requests)
    assert "solhelps.webhook.test" == requests[0].headers["x-sol-event"]
    assert "zapier" == requests[0].headers["x-sol-provider"]
    assert verify_signature(secret, requests[0].headers, requests[0].body)

    page.reload()
    assert 0 == page.locator("#new-secret").count()
    expect(page.get_by_text("whsec_…" + secret[-4:])).to_be_visible()


def test_test_send_shows_endpoint_error(site: Site) -> None:
    site.configure(provider="generic")
    site.receiver.script(Respond(status=404, body=b"no such hook"))
    page = site.sign_in(site.admin_token)
    open_webhook_page(page)

    page.get_by_role("button", name="Send test webhook").click()

    result = page.locator("#test-result")
    expect(result).to_contain_text("Test webhook failed")
    expect(result).to_contain_text("Webhook endpoint returned 404")
    expect(result).to_contain_text("check the endpoint's logs")
    save_screenshot(page, "webhook-test-failed")
    result.get_by_role("link", name="See this test in Delivery history").click()
    expect(page.get_by_text("no such hook")).to_be_attached()


def test_toggle_disables_and_enables(site: Site) -> None:
    site.configure()
    page = site.sign_in(site.admin_token)
    open_webhook_page(page)

    page.get_by_role("button", name="Disable webhook handoff").click()
    expect(page.get_by_text("Webhook handoff is disabled:")).to_be_visible()
    expect(page.locator("dl.facts")).to_contain_text("Disabled")
    page.get_by_role("button", name="Send test webhook").click()
    expect(page.get_by_role("alert")).to_contain_text("configured but disabled")

    page.get_by_role("button", name="Enable webhook handoff").click()
    expect(page.get_by_text("Webhook handoff is enabled:")).to_be_visible()
    expect(page.locator("dl.facts")).to_contain_text("Enabled")


def test_remove_needs_confirmation(site: Site) -> None:
    site.configure()
    page = site.sign_in(site.admin_token)
    open_webhook_page(page)
    unconfirmed = page.request.post(
        "/account/integrations/webhook/remove", form={"csrf_token": csrf_token_of(page)}
    )
    assert 422 == unconfirmed.status
    assert "confirmation missing" in unconfirmed.text()

    page.get_by_label("Yes, remove the configuration").check()
    page.get_by_role("button", name="Remove webhook handoff").click()

    expect(page.get_by_text("Webhook handoff removed:")).to_be_visible()
    expect(page.get_by_text("Not configured").first).to_be_visible()


def test_rotate_shows_new_secret_once(site: Site) -> None:
    site.configure()
    page = site.sign_in(site.admin_token)
    open_webhook_page(page)

    page.get_by_role("button", name="Rotate secret").click()

    secret = page.get_by_label("Signing secret", exact=True).input_value()
    assert secret.startswith("whsec_")
    expect(page.get_by_text("The previous secret keeps signing until")).to_be_visible()
    save_screenshot(page, "webhook-rotated")
    page.get_by_role("button", name="Send test webhook").click()
    expect(page.locator("#test-result")).to_contain_text("Test webhook sent")
    request = site.receiver.wait_for(1)[0]
    assert 2 == len(request.headers["x-sol-signature"].split(" "))
    assert verify_signature(secret, request.headers, request.body)
    assert "solhelps.webhook.test" == json.loads(request.body)["event"]

    page.goto("/account/integrations/webhook")
    assert 0 == page.locator("#new-secret").count()
