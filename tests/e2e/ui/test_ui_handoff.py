"""A member sends a handoff from Friction Insights; an admin finds and redelivers it."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

from playwright.sync_api import expect

from api.ui.history import PAGE_SIZE
from tests.e2e.ui.conftest import Site, save_screenshot
from tests.seed import enqueue_handoffs


def test_member_sends_and_admin_redelivers(site: Site) -> None:
    site.configure(provider="generic")

    member = site.sign_in(site.seeded.member_token)
    expect(member.get_by_role("heading", name="Friction Insights", level=1)).to_be_visible()
    member.get_by_label("Assistant").select_option("asst_123")
    member.get_by_label("Range").select_option("7d")
    member.get_by_role("button", name="Apply").click()
    member.get_by_role("link", name="Permissions confusion").click()
    expect(member.get_by_role("heading", name="Recommended action")).to_be_visible()
    save_screenshot(member, "insights-theme")

    member.get_by_role("button", name="Send to webhook").click()
    sent = member.locator("#handoff-sent")
    expect(sent).to_contain_text("Handoff sent to your webhook")
    delivery_id = sent.locator("code").inner_text()
    assert [delivery_id] == site.delivery_ids()
    expect(sent).to_contain_text("An Admin or Owner can follow it in Delivery history")
    save_screenshot(member, "insights-sent")

    received = site.receiver.wait_for(1)[0]
    body = json.loads(received.body)
    assert delivery_id == received.headers["x-sol-delivery"]
    assert "permissions" == body["theme"]["id"]
    assert "7d" == body["scope"]["range"]["preset"]
    assert "Mel Member" == body["actor"]["name"]
    site.pipeline.wait_for_status(delivery_id, {"delivered"})

    admin = site.sign_in(site.admin_token)
    admin.get_by_role("link", name="Delivery history").click()
    admin.get_by_label("Theme").select_option("permissions")
    admin.get_by_label("Status").select_option("delivered")
    admin.get_by_role("button", name="Apply filters").click()
    rows = admin.locator("table tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Delivered")
    save_screenshot(admin, "deliveries")

    rows.first.get_by_role("link").click()
    expect(admin.get_by_role("heading", level=1)).to_contain_text(delivery_id)
    attempts = admin.locator("table.attempts tbody tr:not(.excerpt-row)")
    expect(attempts).to_have_count(1)
    expect(attempts.first).to_contain_text("scheduled")
    expect(attempts.first).to_contain_text("200")
    expect(admin.locator("pre.payload")).to_contain_text('"event": "solhelps.insight.handoff"')

    admin.get_by_role("button", name="Redeliver").click()
    expect(admin.get_by_role("status")).to_contain_text("Redelivery queued")
    site.receiver.wait_for(2)
    site.pipeline.wait_for_status(delivery_id, {"delivered"})
    admin.reload()
    expect(attempts).to_have_count(2)
    expect(attempts.nth(1)).to_contain_text("manual")
    expect(attempts.nth(1)).to_contain_text("Delivered")
    admin.goto(f"/deliveries/{delivery_id}")
    save_screenshot(admin, "delivery")

    # The redeliver form redirects to the delivery's page, so the reload queued nothing.
    assert 2 == len(site.receiver.requests)
    redelivered = site.receiver.requests[1]
    assert delivery_id == redelivered.headers["x-sol-delivery"]
    assert received.body == redelivered.body


def test_admin_sees_link_to_history_after_sending(site: Site) -> None:
    site.configure(provider="zapier")
    admin = site.sign_in(site.admin_token)
    admin.get_by_role("link", name="SSO setup stalls at domain verification").click()

    admin.get_by_role("button", name="Send to Zapier").click()

    sent = admin.locator("#handoff-sent")
    expect(sent).to_contain_text("Handoff sent to Zapier")
    delivery_id = sent.locator("code").inner_text()
    sent.get_by_role("link", name="Follow this delivery in Delivery history").click()
    expect(admin).to_have_url(re.compile(f"/deliveries/{delivery_id}$"))


def test_reload_of_sent_form_sends_once(site: Site) -> None:
    site.configure()
    member = site.sign_in(site.seeded.member_token)
    member.get_by_role("link", name="Permissions confusion").click()

    member.get_by_role("button", name="Send to webhook").click()
    first = member.locator("#handoff-sent code").inner_text()
    # Reloading the result page posts the same form, with the same idempotency key, again.
    member.reload()
    second = member.locator("#handoff-sent code").inner_text()

    assert first == second
    assert [first] == site.delivery_ids()


def test_history_pages_and_filters_dates(site: Site) -> None:
    site.configure()
    enqueue_handoffs(site.engine, site.seeded, site.settings, count=PAGE_SIZE + 3)
    admin = site.sign_in(site.admin_token)
    admin.goto("/deliveries")
    rows = admin.locator("table tbody tr")

    expect(rows).to_have_count(PAGE_SIZE)
    admin.get_by_role("link", name="Older deliveries").click()
    expect(rows).to_have_count(3)
    expect(admin.get_by_role("link", name="Older deliveries")).to_have_count(0)
    admin.get_by_role("link", name="Newest").click()
    expect(rows).to_have_count(PAGE_SIZE)

    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    admin.get_by_label("Created from").fill(tomorrow)
    admin.get_by_role("button", name="Apply filters").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("No deliveries match these filters.")
