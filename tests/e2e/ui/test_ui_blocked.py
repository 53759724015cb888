"""Blocked states in the product guide's words: not configured, disabled, not permitted."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.e2e.ui.conftest import Site, csrf_token_of, save_screenshot

SEND_BUTTON = re.compile(r"^Send to (Zapier|webhook)$")


def open_theme(page: Page, label: str) -> None:
    page.get_by_role("link", name=label).click()
    expect(page.get_by_role("heading", name="Recommended action")).to_be_visible()


def forge_handoff(page: Page, theme_id: str, assistant_id: str) -> tuple[int, str]:
    """POST the send form as a crafted request with the session's own CSRF token."""
    response = page.request.post(
        f"/dashboard/insights/themes/{theme_id}/handoff",
        form={
            "csrf_token": csrf_token_of(page),
            "theme_assistant": assistant_id,
            "preset": "30d",
            "idempotency_key": "forged-1",
        },
    )
    return response.status, response.text()


def test_not_configured_names_who_can_fix(site: Site) -> None:
    member = site.sign_in(site.seeded.member_token)
    open_theme(member, "Permissions confusion")

    blocked = member.locator("#blocked")
    expect(blocked).to_contain_text("Not configured:")
    expect(blocked).to_contain_text("Webhook handoff is not configured")
    expect(blocked).to_contain_text("Ask an Admin or Owner of your workspace.")
    expect(member.get_by_role("button", name=SEND_BUTTON)).to_have_count(0)
    save_screenshot(member, "blocked-not-configured-member")
    status, text = forge_handoff(member, "permissions", "asst_123")
    assert 409 == status
    assert "Webhook handoff is not configured" in text

    admin = site.sign_in(site.admin_token)
    open_theme(admin, "Permissions confusion")
    expect(admin.locator("#blocked")).to_contain_text("Webhook handoff is not configured")
    admin.get_by_role("link", name="Configure it in Account → Integrations").click()
    expect(admin).to_have_url(re.compile(r"/account/integrations/webhook$"))
    expect(admin.get_by_text("Not configured").first).to_be_visible()


def test_disabled_integration_blocks_sending(site: Site) -> None:
    site.configure(enabled=False)
    member = site.sign_in(site.seeded.member_token)
    open_theme(member, "Permissions confusion")

    blocked = member.locator("#blocked")
    expect(blocked).to_contain_text("Disabled:")
    expect(blocked).to_contain_text("Webhook handoff is configured but disabled")
    expect(blocked).to_contain_text("Ask an Admin or Owner of your workspace.")
    expect(member.get_by_role("button", name=SEND_BUTTON)).to_have_count(0)
    save_screenshot(member, "blocked-disabled-member")

    admin = site.sign_in(site.admin_token)
    open_theme(admin, "Permissions confusion")
    admin.get_by_role("link", name="Enable it in Account → Integrations").click()
    admin.get_by_role("button", name="Enable webhook handoff").click()
    expect(admin.get_by_text("Webhook handoff is enabled:")).to_be_visible()
    admin.get_by_role("link", name="Friction Insights").click()
    open_theme(admin, "Permissions confusion")
    expect(admin.get_by_role("button", name="Send to webhook")).to_be_visible()


def test_forged_post_without_permission_gets_403(site: Site) -> None:
    site.configure()
    viewer = site.sign_in(site.viewer_token)
    open_theme(viewer, "Permissions confusion")

    blocked = viewer.locator("#blocked")
    expect(blocked).to_contain_text("Not permitted:")
    expect(blocked).to_contain_text("not permitted: your role or assistant scope")
    expect(blocked).to_contain_text("ask an Admin or Owner")
    expect(viewer.get_by_role("button", name=SEND_BUTTON)).to_have_count(0)
    save_screenshot(viewer, "blocked-not-permitted")
    status, text = forge_handoff(viewer, "permissions", "asst_123")
    assert 403 == status
    assert "not permitted: your role or assistant scope" in text

    # The exporting member's scope covers asst_123 only.
    member = site.sign_in(site.seeded.member_token)
    open_theme(member, "Invoice export does not match accounting tools")
    expect(member.locator("#blocked")).to_contain_text("not permitted")
    expect(member.get_by_role("button", name=SEND_BUTTON)).to_have_count(0)
    status, text = forge_handoff(member, "invoice-export-format", "asst_456")
    assert 403 == status
    assert "not permitted" in text

    assert [] == site.delivery_ids()


def test_pages_refuse_wrong_role(site: Site) -> None:
    member = site.sign_in(site.seeded.member_token)
    for path in ("/deliveries", "/account/integrations/webhook", "/ops"):
        response = member.goto(path)
        assert response is not None
        assert 403 == response.status, path
        expect(member.get_by_role("alert")).to_contain_text("not permitted: only")
        expect(member.get_by_text("Ask an Admin or Owner of your workspace.")).to_be_visible()
    save_screenshot(member, "blocked-member-on-admin-page")

    operator = site.sign_in(site.operator_token)
    response = operator.goto("/dashboard/insights")
    assert response is not None
    assert 403 == response.status
    expect(operator.get_by_role("alert")).to_contain_text(
        "operator token only opens the Operations"
    )
