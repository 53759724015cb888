"""Sign-in, the session cookie, sign-out and CSRF protection of every form."""

from __future__ import annotations

import re

from playwright.sync_api import expect
from sqlalchemy import delete, func, select

from schema.tables import integrations, members
from tests.e2e.ui.conftest import Site, csrf_token_of, save_screenshot


def count_integrations(site: Site) -> int:
    with site.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(integrations)).scalar_one())


def test_sign_in_returns_to_requested_page(site: Site) -> None:
    page = site.new_page()
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/sign-in$"))
    save_screenshot(page, "sign-in")

    page.goto("/deliveries?status=failed")
    expect(page).to_have_url(re.compile(r"/sign-in\?next="))
    page.get_by_label("API token").fill(site.admin_token)
    page.get_by_role("button", name="Sign in").click()

    expect(page).to_have_url(re.compile(r"/deliveries\?status=failed$"))
    expect(page.get_by_label("Status")).to_have_value("failed")


def test_sign_in_never_redirects_offsite(site: Site) -> None:
    page = site.new_page()
    page.goto("/sign-in")
    token = csrf_token_of(page)

    for offsite in ("//127.0.0.2/x", "/\\127.0.0.2/x", "/\t/127.0.0.2/x", "http://127.0.0.2/"):
        response = page.request.post(
            "/sign-in",
            form={"csrf_token": token, "token": site.admin_token, "next": offsite},
            max_redirects=0,
        )
        assert 303 == response.status, offsite
        assert "/dashboard/insights" == response.headers["location"], offsite
        # Signing in replaced the session, so the next form needs the new session's token.
        page.context.clear_cookies()
        page.goto("/sign-in")
        token = csrf_token_of(page)


def test_unknown_token_is_rejected(site: Site) -> None:
    page = site.new_page()
    page.goto("/sign-in")

    page.get_by_label("API token").fill("sh_not-a-real-token")
    page.get_by_role("button", name="Sign in").click()

    expect(page.get_by_role("alert")).to_contain_text("invalid token")
    expect(page).to_have_url(re.compile(r"/sign-in$"))


def test_session_cookie_hides_token(site: Site) -> None:
    page = site.sign_in_with_form(site.admin_token)

    cookies = {cookie["name"]: cookie for cookie in page.context.cookies()}
    session = cookies["handoff_session"]

    assert session["httpOnly"] is True
    assert "Lax" == session["sameSite"]
    assert site.admin_token not in session["value"]
    assert "" == page.evaluate("document.cookie")


def test_tampered_cookie_signs_out(site: Site) -> None:
    page = site.sign_in(site.admin_token)
    session = next(c for c in page.context.cookies() if c["name"] == "handoff_session")
    payload, _, signature = session["value"].partition(".")
    page.context.add_cookies(
        [{**session, "value": f"{payload}.{signature[::-1]}"}]  # type: ignore[list-item]
    )

    page.goto("/deliveries")

    expect(page).to_have_url(re.compile(r"/sign-in\?next="))


def test_sign_out_ends_session(site: Site) -> None:
    page = site.sign_in(site.admin_token)
    without_token = page.request.post("/sign-out", form={})
    assert 403 == without_token.status

    page.get_by_role("button", name="Sign out").click()

    expect(page.get_by_role("status")).to_contain_text("you are signed out")
    page.goto("/deliveries")
    expect(page).to_have_url(re.compile(r"/sign-in\?next="))


def test_removed_member_is_signed_out(site: Site) -> None:
    page = site.sign_in(site.seeded.member_token)
    with site.engine.begin() as connection:
        connection.execute(delete(members).where(members.c.id == site.seeded.member_id))

    page.goto("/dashboard/insights")

    expect(page).to_have_url(re.compile(r"/sign-in\?next="))


def test_form_without_csrf_token_is_rejected(site: Site) -> None:
    page = site.sign_in(site.admin_token)
    page.goto("/account/integrations/webhook")
    page.get_by_label("Webhook URL").fill(site.receiver.url)
    page.locator("form[action='/account/integrations/webhook'] input[name=csrf_token]").evaluate(
        "input => input.remove()"
    )

    with page.expect_response(re.compile(r"/account/integrations/webhook$")) as posted:
        page.get_by_role("button", name="Save configuration").click()

    assert 403 == posted.value.status
    expect(page.get_by_role("alert")).to_contain_text("security token is missing or out of date")
    save_screenshot(page, "csrf-rejected")
    assert 0 == count_integrations(site)


def test_post_with_wrong_csrf_token_is_rejected(site: Site) -> None:
    page = site.sign_in(site.admin_token)
    token = csrf_token_of(page)
    form = {"provider": "generic", "url": site.receiver.url}

    for forged in ({**form}, {**form, "csrf_token": token[::-1]}, {**form, "csrf_token": ""}):
        response = page.request.post("/account/integrations/webhook", form=forged)
        assert 403 == response.status
        assert "security token" in response.text()

    assert 0 == count_integrations(site)
    accepted = page.request.post(
        "/account/integrations/webhook", form={**form, "csrf_token": token}
    )
    assert 200 == accepted.status
    assert 1 == count_integrations(site)
