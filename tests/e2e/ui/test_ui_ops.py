"""The Operations page: which figures each caller reads, and that it refreshes by itself."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.e2e.ui.conftest import Site, save_screenshot

# The test asks for a refresh every 2 s; this leaves room for one refresh on a slow machine.
REFRESH_WAIT_MS = 6_000


def test_operator_sees_figures_refresh(site: Site) -> None:
    site.configure()
    page = site.sign_in(site.operator_token)
    expect(page).to_have_url(re.compile(r"/ops$"))
    expect(page.get_by_text("Figures of every workspace")).to_be_visible()
    expect(page.locator("meta[http-equiv=refresh]")).to_have_attribute("content", "5")
    page.goto("/ops?refresh=2")
    expect(page.locator("meta[http-equiv=refresh]")).to_have_attribute("content", "2")
    expect(page.locator("#count-delivered")).to_have_text("0")
    expect(page.get_by_text("Messages waiting")).to_be_visible()
    save_screenshot(page, "ops-operator")

    site.deliver_handoff()

    # No reload by the test: the page's own refresh brings the new count.
    expect(page.locator("#count-delivered")).to_have_text("1", timeout=REFRESH_WAIT_MS)


def test_admin_sees_own_workspace(site: Site) -> None:
    page = site.sign_in(site.admin_token)

    page.get_by_role("link", name="Operations").click()

    expect(page.get_by_text("Figures of workspace acme")).to_be_visible()
    expect(page.get_by_text("Not shown for one workspace")).to_be_visible()
    save_screenshot(page, "ops-admin")
    page.get_by_role("link", name="Pause refreshing").click()
    expect(page.get_by_text("Refreshing is paused.")).to_be_visible()
    expect(page.locator("meta[http-equiv=refresh]")).to_have_count(0)
