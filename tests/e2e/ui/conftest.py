"""Fixtures of the browser tests: Debian's Chromium through Playwright, the API on a real port.

The API runs under uvicorn in a thread of the test process, on a free port of 127.0.0.1,
with the real relay and worker of `tests.integration.harness.Pipeline` delivering to a
real receiver. Every page a test visits can be saved as a PNG under
test-artifacts/screenshots/.
"""

from __future__ import annotations

import hashlib
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright
from sqlalchemy import Engine, insert, select, update

from api.app import create_app
from api.tokens import hash_token
from api.ui.session import COOKIE_NAME, encode_session, new_session, session_key
from handoff.secret_box import SecretBox
from handoff.settings import Settings
from schema.tables import deliveries, integrations, members, operator_tokens, themes
from tests.conftest import TEST_SECRET_KEY, require_service
from tests.integration.harness import Pipeline
from tests.receivers import Receiver
from tests.seed import Seeded, enqueue_handoffs, seed_workspace

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parents[3] / "test-artifacts" / "screenshots"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 375, "height": 812}
SERVER_START_TIMEOUT_S = 10.0
PAGE_TIMEOUT_MS = 10_000

OTHER_ASSISTANT = "asst_456"
EXTRA_THEMES: list[dict[str, Any]] = [
    {
        "id": "sso-domain-verification",
        "assistant_id": "asst_123",
        "label": "SSO setup stalls at domain verification",
        "conversation_count": 17,
        "impact_tier": "High",
        "confidence": "High",
        "recommendation_title": "Explain DNS verification inside the SSO wizard",
        "recommendation_next_step": "Show the exact TXT record and a 'Check again' button.",
        "evidence": ["Domain verification has been pending for two days."],
    },
    {
        "id": "invoice-export-format",
        "assistant_id": OTHER_ASSISTANT,
        "label": "Invoice export does not match accounting tools",
        "conversation_count": 11,
        "impact_tier": "Medium",
        "confidence": "Low",
        "recommendation_title": "Offer a CSV export with accounting columns",
        "recommendation_next_step": "Add VAT number, net and tax amounts as separate columns.",
        "evidence": [f"Snippet {number} about invoice columns." for number in range(1, 13)],
    },
]


def save_screenshot(page: Page, name: str) -> Path:
    """Save a full-page PNG of `page` as test-artifacts/screenshots/NAME.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def csrf_token_of(page: Page) -> str:
    """Return the CSRF token in the page's forms (the sign-out form has one on every page)."""
    value = page.locator("input[name=csrf_token]").first.get_attribute("value")
    assert value
    return value


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """Headless Debian Chromium; never a browser that Playwright downloads.

    Package scope stops Playwright after these tests: while its sync API is open, the
    main thread counts as inside a running event loop, and `asyncio.run()` raises.
    """
    if not CHROMIUM.exists():
        require_service(f"Chromium at {CHROMIUM}")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


class ApiServer:
    """`create_app` served by uvicorn in a thread, on a socket bound to a free loopback port."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        port = self._socket.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(
            create_app(settings, engine), log_config=None, lifespan="off", access_log=False
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    def start(self) -> ApiServer:
        self._thread.start()
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise AssertionError(f"uvicorn did not start within {SERVER_START_TIMEOUT_S} s")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()


@dataclass
class Site:
    """The running service, its seeded workspace and the browser contexts a test opened."""

    base_url: str
    engine: Engine
    settings: Settings
    seeded: Seeded
    receiver: Receiver
    pipeline: Pipeline
    browser: Browser
    admin_token: str
    viewer_token: str
    operator_token: str
    contexts: list[BrowserContext] = field(default_factory=list)

    def new_page(self, viewport: dict[str, int] | None = None) -> Page:
        """Open a page in a fresh browser context (its own cookies), not signed in."""
        context = self.browser.new_context(
            viewport=viewport or DESKTOP,  # type: ignore[arg-type]
            base_url=self.base_url,
        )
        context.set_default_timeout(PAGE_TIMEOUT_MS)
        self.contexts.append(context)
        return context.new_page()

    def sign_in(self, token: str, viewport: dict[str, int] | None = None) -> Page:
        """Open a page with a session for `token` and return it on the page `/` leads to.

        The cookie is made as the sign-in form makes it, which saves each test the form's
        round trips. The form itself is tested in test_ui_session.
        """
        page = self.new_page(viewport)
        key = session_key(str(self.settings.secret_key))
        page.context.add_cookies(
            [
                {
                    "name": COOKIE_NAME,
                    "value": encode_session(new_session(hash_token(token)), key),
                    "url": self.base_url,
                    "httpOnly": True,
                    "sameSite": "Lax",
                }
            ]
        )
        page.goto("/")
        return page

    def sign_in_with_form(self, token: str) -> Page:
        """Sign in through the form with `token` and return the page it lands on."""
        page = self.new_page()
        page.goto("/sign-in")
        page.get_by_label("API token").fill(token)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(re.compile(r"/(dashboard|ops)"))
        return page

    def configure(self, *, provider: str = "generic", enabled: bool = True) -> None:
        """Save an integration pointing at the receiver, as an admin would."""
        with self.engine.begin() as connection:
            connection.execute(
                insert(integrations).values(
                    workspace_id=self.seeded.workspace_id,
                    provider=provider,
                    url=self.receiver.url,
                    enabled=enabled,
                    secret_encrypted=SecretBox(TEST_SECRET_KEY).encrypt("whsec_c2VjcmV0LWtleQ=="),
                )
            )

    def disable(self) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                update(integrations)
                .where(integrations.c.workspace_id == self.seeded.workspace_id)
                .values(enabled=False, disabled_reason="switched off in a test")
            )

    def deliver_handoff(self) -> str:
        """Commit a handoff of the seeded member, as product code would; wait until delivered."""
        delivery_id = enqueue_handoffs(self.engine, self.seeded, self.settings)[0]
        self.pipeline.wait_for_status(delivery_id, {"delivered"})
        return delivery_id

    def delivery_ids(self) -> list[str]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(deliveries.c.id).order_by(deliveries.c.created_at)
            ).scalars()
            return [str(row) for row in rows]

    def close(self) -> None:
        for context in self.contexts:
            context.close()


def _add_member(
    engine: Engine, workspace_id: str, name: str, role: str, permissions: list[str]
) -> str:
    token = f"sh_{uuid.uuid4().hex}"
    with engine.begin() as connection:
        connection.execute(
            insert(members).values(
                id=str(uuid.uuid4()),
                workspace_id=workspace_id,
                name=name,
                role=role,
                permissions=permissions,
                assistant_ids=["asst_123"],
                token_hash=hashlib.sha256(token.encode()).digest(),
            )
        )
    return token


def _add_operator(engine: Engine) -> str:
    token = f"sh_{uuid.uuid4().hex}"
    with engine.begin() as connection:
        connection.execute(
            insert(operator_tokens).values(
                id=str(uuid.uuid4()), token_hash=hashlib.sha256(token.encode()).digest()
            )
        )
    return token


@pytest.fixture
def site(
    engine: Engine,
    settings: Settings,
    redis_broker_url: str,
    receiver: Receiver,
    browser: Browser,
) -> Iterator[Site]:
    """The API, relay and worker over a workspace with no integration saved yet.

    The pages do not depend on the broker, so these tests run on Redis only.

    Members: the seeded owner, the seeded member (`insights.export` for asst_123), an admin,
    and a viewer (a member without `insights.export`); plus an operator token.
    """
    seeded = seed_workspace(engine)
    with engine.begin() as connection:
        connection.execute(
            insert(themes), [{"workspace_id": seeded.workspace_id, **row} for row in EXTRA_THEMES]
        )
    admin_token = _add_member(engine, seeded.workspace_id, "Ada Admin", "admin", [])
    viewer_token = _add_member(engine, seeded.workspace_id, "Vic Viewer", "member", [])
    operator_token = _add_operator(engine)

    pipeline = Pipeline(settings, engine, redis_broker_url).start()
    server = ApiServer(settings, engine).start()
    running = Site(
        base_url=server.base_url,
        engine=engine,
        settings=settings,
        seeded=seeded,
        receiver=receiver,
        pipeline=pipeline,
        browser=browser,
        admin_token=admin_token,
        viewer_token=viewer_token,
        operator_token=operator_token,
    )
    yield running
    running.close()
    server.stop()
    pipeline.close()
