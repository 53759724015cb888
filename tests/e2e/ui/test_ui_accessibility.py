"""Labels, keyboard use with a visible focus, status as text, and every page at 375 px wide."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

from tests.e2e.ui.conftest import PHONE, Site, save_screenshot

# Every form control needs a label (or an ARIA name); hidden inputs are not controls.
UNLABELLED_CONTROLS = """
() => [...document.querySelectorAll('input, select, textarea, button')]
  .filter(el => el.type !== 'hidden')
  .filter(el => {
    const labelled = (el.labels && el.labels.length > 0) || el.getAttribute('aria-label')
      || el.getAttribute('aria-labelledby');
    const named = el.tagName === 'BUTTON' && el.textContent.trim().length > 0;
    return !(labelled || named);
  })
  .map(el => el.outerHTML)
"""

FOCUS_STYLE = """
() => {
  const el = document.activeElement;
  const style = getComputedStyle(el);
  return {
    tag: el.tagName,
    text: (el.textContent || el.value || '').trim().slice(0, 40),
    outlineStyle: style.outlineStyle,
    outlineWidth: parseFloat(style.outlineWidth),
  };
}
"""

# Elements that stick out of the viewport, other than the content of a scrolling table region.
OVERFLOWING = """
() => [...document.querySelectorAll('body *')]
  .filter(el => !el.closest('.table-wrap') || el.classList.contains('table-wrap'))
  .filter(el => el.getBoundingClientRect().right > document.documentElement.clientWidth + 1)
  .map(el => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
    (el.className ? '.' + el.className : ''))
  .slice(0, 5)
"""

# The status words of the badges: the colour only repeats what the word states.
STATUS_TEXTS = """
() => [...document.querySelectorAll('.status')].map(el => el.textContent.trim())
"""


def admin_pages(delivery_id: str) -> dict[str, str]:
    return {
        "insights": "/dashboard/insights?theme=permissions",
        "integrations-index": "/account/integrations",
        "webhook": "/account/integrations/webhook",
        "history": "/deliveries",
        "delivery-page": f"/deliveries/{delivery_id}",
        "operations": "/ops?refresh=off",
    }


def test_every_control_is_labelled(site: Site) -> None:
    site.configure(provider="zapier")
    delivery_id = site.deliver_handoff()
    page = site.sign_in(site.admin_token)

    for name, path in admin_pages(delivery_id).items():
        response = page.goto(path)
        assert response is not None
        assert 200 == response.status, name
        assert [] == page.evaluate(UNLABELLED_CONTROLS), name
        for text in page.evaluate(STATUS_TEXTS):
            assert any(character.isalpha() for character in text), (name, text)
        save_screenshot(page, f"desktop-{name}")

    anonymous = site.new_page()
    anonymous.goto("/sign-in")
    assert [] == anonymous.evaluate(UNLABELLED_CONTROLS)


def test_keyboard_focus_is_visible(site: Site) -> None:
    site.configure()
    page = site.sign_in(site.admin_token)
    page.goto("/account/integrations/webhook")

    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    expect(skip).to_be_focused()
    box = skip.bounding_box()
    assert box is not None and box["x"] >= 0
    save_screenshot(page, "focus-skip-link")

    seen: list[dict[str, Any]] = []
    for _ in range(20):
        page.keyboard.press("Tab")
        focus = page.evaluate(FOCUS_STYLE)
        if "BODY" == focus["tag"]:
            break  # past the last control of the page
        if "INPUT" == focus["tag"] and not any("INPUT" == item["tag"] for item in seen):
            save_screenshot(page, "focus-visible")
        seen.append(focus)
        assert "none" != focus["outlineStyle"], focus
        assert focus["outlineWidth"] >= 2, focus
    tags = {focus["tag"] for focus in seen}
    assert {"A", "BUTTON", "INPUT"} <= tags


def test_keyboard_alone_sends_handoff(site: Site) -> None:
    site.configure()
    page = site.sign_in(site.seeded.member_token)

    def tab_to(name: str) -> None:
        for _ in range(40):
            page.keyboard.press("Tab")
            if name == page.evaluate("document.activeElement.textContent.trim()"):
                return
        raise AssertionError(f"{name!r} is not reachable with Tab")

    tab_to("Permissions confusion")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Recommended action")).to_be_visible()
    tab_to("Send to webhook")
    page.keyboard.press("Enter")

    expect(page.locator("#handoff-sent")).to_contain_text("Handoff sent")
    assert 1 == len(site.delivery_ids())


def test_pages_fit_phone_width(site: Site) -> None:
    site.configure(provider="zapier")
    delivery_id = site.deliver_handoff()
    page = site.sign_in(site.admin_token, viewport=PHONE)

    for name, path in admin_pages(delivery_id).items():
        page.goto(path)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], (name, width, page.evaluate(OVERFLOWING))
        save_screenshot(page, f"phone-{name}")

    signed_out = site.new_page(PHONE)
    signed_out.goto("/sign-in")
    assert signed_out.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    save_screenshot(signed_out, "phone-sign-in")
