"""The whole job on one machine: services, demo data, a verifying receiver and a real handoff."""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
from sqlalchemy import Engine, insert, select, update

from handoff.commands.output import format_table
from handoff.commands.processes import service_children
from handoff.db import make_engine
from handoff.embedded import EmbeddedServersMissing, prepare_services
from handoff.logging import configure_logging
from handoff.receiver import ReceivedEvent, VerifyingReceiver
from handoff.settings import load_settings, use_settings
from handoff.supervisor import Supervisor, stop_on_signals
from handoff.themes_file import parse_themes, upsert_themes
from schema.tables import members, workspaces

WORKSPACE_ID = "acme"
WORKSPACE_NAME = "Acme Inc"
PLAN_TIER = "GROWTH"
ASSISTANT_ID = "asst_123"
HANDOFF_THEME_ID = "permissions"

# Seconds the API may take to answer /readyz; a first embedded Postgres start takes a few.
READY_TIMEOUT_S = 60.0
# Seconds from the first request until both events must be verified by the receiver.
VERIFY_TIMEOUT_S = 60.0
WORKER_PROCESSES = 1
WORKER_THREADS = 4


@dataclass(frozen=True)
class DemoMember:
    """A member of the demo workspace; found again by name and role on the next run."""

    name: str
    role: str
    permissions: tuple[str, ...] = ()
    assistant_ids: tuple[str, ...] = ()


OWNER = DemoMember("Maya Chen", "owner")
ADMIN = DemoMember("Daniel Okafor", "admin")
MEMBER = DemoMember("Priya Raman", "member", ("insights.export",), (ASSISTANT_ID,))

DEMO_THEMES: list[dict[str, Any]] = [
    {
        "workspaceId": WORKSPACE_ID,
        "assistantId": ASSISTANT_ID,
        "id": HANDOFF_THEME_ID,
        "label": "Permissions confusion",
        "conversationCount": 24,
        "impactTier": "High",
        "confidence": "Medium",
        "recommendation": {
            "title": "Reduce access/role ambiguity",
            "nextStep": "Say on the upload page which role may upload, and link members to "
            "the admin who can grant it.",
        },
        "evidence": [
            {"snippet": "I can't upload the contract, the button is greyed out for me."},
            {"snippet": "Who is the admin on our account? Support told me to ask them."},
            {"snippet": "My colleague can export reports but I can't, we have the same job."},
            {"snippet": "It says 'insufficient permissions' but not which permission I need."},
            {"snippet": "I was made Editor yesterday and still cannot see the billing tab."},
        ],
    },
    {
        "workspaceId": WORKSPACE_ID,
        "assistantId": ASSISTANT_ID,
        "id": "sso-domain-verification",
        "label": "SSO setup stalls at domain verification",
        "conversationCount": 17,
        "impactTier": "High",
        "confidence": "High",
        "recommendation": {
            "title": "Explain DNS verification inside the SSO wizard",
            "nextStep": "Show the exact TXT record, how long DNS takes to update, and a "
            "'Check again' button on step 2.",
        },
        "evidence": [
            {"snippet": "Domain verification has been pending for two days, what do I do?"},
            {"snippet": "Where exactly do I put the TXT record? Our DNS is on Cloudflare."},
            {"snippet": "The wizard says 'not verified' with no detail and no retry."},
        ],
    },
    {
        "workspaceId": WORKSPACE_ID,
        "assistantId": ASSISTANT_ID,
        "id": "invoice-export-format",
        "label": "Invoice export does not match accounting tools",
        "conversationCount": 11,
        "impactTier": "Medium",
        "confidence": "Low",
        "recommendation": {
            "title": "Offer a CSV export with accounting columns",
            "nextStep": "Add VAT number, net and tax amounts as separate columns to the "
            "invoice CSV export.",
        },
        "evidence": [
            {"snippet": "Our accountant needs net and VAT in separate columns."},
            {"snippet": "The PDF invoices can't be imported into Xero."},
            {"snippet": "Is there a way to export all invoices of last year at once?"},
            {"snippet": "The CSV has the amounts as text with a currency sign in front."},
        ],
    },
]


class DemoFailed(Exception):
    """Raised when a step of the demo fails; the message is the line to print."""


def run_demo(
    *,
    host: str,
    port: int,
    exit_after: bool,
    env: Mapping[str, str] | None = None,
    out: IO[str] | None = None,
) -> int:
    """Run the demo until Ctrl-C, or until both events are verified with `exit_after`.

    Args:
        host: address for the API, such as 127.0.0.1.
        port: TCP port for the API.
        exit_after: stop after the run instead of serving until Ctrl-C.
        env: the environment to read; `os.environ` when None.
        out: where the demo's report goes; standard output when None.

    Returns:
        0 when both events were verified (or on Ctrl-C after that), 1 when a step failed,
        2 when the embedded servers are needed but not installed.

    Raises:
        SettingError: only one of DATABASE_URL and BROKER_URL is set, or a setting is invalid.
    """
    source = dict(os.environ if env is None else env)
    report = _Report(out or sys.stdout)
    data_dir = Path(source.get("HANDOFF_DATA_DIR", "").strip() or ".handoff-demo").resolve()
    # The report is the demo's output; of its own logs only warnings (a child restarting)
    # join it. The children log to a file.
    configure_logging("console" if sys.stdout.isatty() else "json", logging.WARNING)

    try:
        services = prepare_services(source, data_dir)
    except EmbeddedServersMissing as error:
        print(error, file=sys.stderr)
        return 2
    child_env = _child_environment(source, data_dir, services.database_url, services.broker_url)
    child_env["HANDOFF_SECRET_KEY"] = services.secret_key
    use_settings(load_settings(child_env))

    if not _port_is_free(host, port):
        report.line(f"port {port} on {host} is in use; choose another with --port")
        return 1
    log_path = data_dir / "handoff.log"
    where = "DATABASE_URL and BROKER_URL from the environment"
    if services.embedded:
        where = f"embedded Postgres and Redis in {data_dir}"
    report.line(f"Sol Helps webhook handoff demo: {where}")
    report.line(f"process logs (JSON lines): {log_path}")

    engine = make_engine(services.database_url, pool_size=1, max_overflow=1)
    try:
        tokens = prepare_database(engine)
    finally:
        engine.dispose()
    report.line(
        f"database migrated; workspace {WORKSPACE_ID} ({WORKSPACE_NAME}, {PLAN_TIER}) with "
        f"an owner, an admin, a member and {len(DEMO_THEMES)} friction themes"
    )

    receiver = VerifyingReceiver(host="127.0.0.1", port=0, out=report.stream, label="receiver: ")
    receiver.start()
    report.line(
        f"receiver listening at {receiver.url}; HANDOFF_ALLOW_PRIVATE_TARGETS=true lets "
        "the service deliver to this loopback address (never set it in production)"
    )

    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        stop_on_signals(stop)
    with log_path.open("ab") as log_file:
        supervisor = Supervisor(
            service_children(host, port, WORKER_PROCESSES, WORKER_THREADS),
            env=child_env,
            output=log_file,
            max_backoff_s=5.0,
        )
        supervising = threading.Thread(
            target=supervisor.run, args=(stop,), name="handoff-supervisor", daemon=True
        )
        supervising.start()
        try:
            return _drive(
                report, receiver, stop, f"http://{_url_host(host)}:{port}", tokens, exit_after
            )
        finally:
            stop.set()
            supervising.join()
            receiver.stop()
            report.line("demo stopped")


def _drive(
    report: _Report,
    receiver: VerifyingReceiver,
    stop: threading.Event,
    base_url: str,
    tokens: dict[DemoMember, str],
    exit_after: bool,
) -> int:
    if not _wait_until_ready(base_url, stop):
        if stop.is_set():
            return 1
        report.line(f"the API did not answer /readyz within {READY_TIMEOUT_S:g} s; see the log")
        return 1
    report.line(f"API ready at {base_url}")

    succeeded = False
    try:
        with httpx.Client(base_url=base_url, timeout=60.0) as client:
            succeeded = _send_events(report, receiver, stop, client, tokens)
    except DemoFailed as error:
        report.line(f"demo failed: {error}")
    except httpx.HTTPError as error:
        # Ctrl-C also stops the API, so a request in flight fails; that is no failure to report.
        if not stop.is_set():
            report.line(f"demo failed: request to the API failed: {error}")
    if stop.is_set():
        report.line("interrupted")
        return 1

    report.line("")
    report.line(f"API:  {base_url}/api/v1  (OpenAPI document: {base_url}/openapi.json)")
    # The site root redirects to the UI's sign-in page, or to the landing page once signed in.
    report.line(f"UI:   {base_url}/  (sign in with a token below)")
    report.line("sign-in tokens, new on every run:")
    for member, token in tokens.items():
        report.line(f"  {member.role:<7} {member.name:<14} {token}")

    if exit_after:
        return 0 if succeeded else 1
    report.line("running until Ctrl-C")
    stop.wait()
    return 0 if succeeded else 1


def _send_events(
    report: _Report,
    receiver: VerifyingReceiver,
    stop: threading.Event,
    client: httpx.Client,
    tokens: dict[DemoMember, str],
) -> bool:
    admin = {"Authorization": f"Bearer {tokens[ADMIN]}"}
    deadline = time.monotonic() + VERIFY_TIMEOUT_S

    saved = _call(
        client,
        "PUT",
        "/api/v1/integrations/webhook",
        admin,
        {"provider": "generic", "url": receiver.url, "enabled": True, "generateSecret": True},
    )
    secret = saved.get("signingSecret")
    if not isinstance(secret, str) or not secret:
        raise DemoFailed("saving the integration returned no generated signingSecret")
    receiver.set_secrets([secret])
    report.line(
        f"integration saved: generic webhook to {receiver.url}, generated signing secret "
        f"{secret[:6]}…{secret[-4:]} handed to the receiver"
    )

    outcome = _call(client, "POST", "/api/v1/integrations/webhook/test", admin, None)
    test_id = str(outcome.get("deliveryId"))
    details = []
    if outcome.get("statusCode") is not None:
        details.append(f"HTTP {outcome['statusCode']}")
    if outcome.get("durationMs") is not None:
        details.append(f"{outcome['durationMs']} ms")
    detail_text = f" ({', '.join(details)})" if details else ""
    message = _suffix(outcome.get("message"))
    report.line(f"test webhook {test_id}: {outcome.get('outcome')}{detail_text}{message}")

    accepted = _call(
        client,
        "POST",
        f"/api/v1/insights/themes/{HANDOFF_THEME_ID}/handoff",
        {"Authorization": f"Bearer {tokens[MEMBER]}"},
        {"assistantId": ASSISTANT_ID, "range": {"preset": "30d"}, "sources": ["chat", "email"]},
    )
    handoff_id = str(accepted.get("deliveryId"))
    report.line(
        f"handoff of theme {HANDOFF_THEME_ID!r} sent by {MEMBER.name} ({MEMBER.role}): "
        f"delivery {handoff_id}, {accepted.get('status')}"
    )

    delivery_ids = [test_id, handoff_id]
    while not receiver.wait_for_verified(delivery_ids, timeout_s=0.5):
        if stop.is_set():
            return False
        if time.monotonic() > deadline:
            raise DemoFailed(
                f"the receiver did not verify both events within {VERIFY_TIMEOUT_S:g} s; "
                "see the log and `handoff deliveries list --workspace acme`"
            )

    report.line("")
    report.line("the receiver verified:")
    for event in receiver.verified_events():
        report.line("  " + _describe(event))
    report.line("both events were verified by the receiver's own HMAC-SHA256 check")

    report.line("")
    report.line("delivery history (GET /api/v1/deliveries):")
    report.line(_history_table(client, admin, delivery_ids))
    return True


def _call(
    client: httpx.Client,
    method: str,
    path: str,
    headers: dict[str, str],
    body: dict[str, Any] | None,
) -> dict[str, Any]:
    response = client.request(method, path, headers=headers, json=body)
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if response.status_code >= 400 or not isinstance(payload, dict):
        message = response.text[:200]
        if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
            message = str(payload["error"].get("message"))
        raise DemoFailed(f"{method} {path} answered {response.status_code}: {message}")
    return payload


def _history_table(client: httpx.Client, headers: dict[str, str], delivery_ids: list[str]) -> str:
    # The worker records an attempt just after the receiver answers, so the history can lag
    # the receiver by a moment.
    items: list[dict[str, Any]] = []
    for _ in range(20):
        page = _call(client, "GET", "/api/v1/deliveries?limit=10", headers, None)
        items = page.get("items") or []
        done = {item["deliveryId"] for item in items if item.get("status") == "delivered"}
        if set(delivery_ids) <= done:
            break
        time.sleep(0.25)
    return format_table(
        ("DELIVERY ID", "EVENT", "STATUS", "ATTEMPTS", "CREATED"),
        [
            (
                str(item.get("deliveryId")),
                str(item.get("event")),
                str(item.get("status")),
                str(item.get("attemptCount")),
                str(item.get("createdAt")),
            )
            for item in items
        ],
    )


def _describe(event: ReceivedEvent) -> str:
    body = event.json() or {}
    evidence = body.get("evidence")
    snippets = len(evidence) if isinstance(evidence, list) else 0
    text = f"{event.event} {event.delivery_id}"
    theme = body.get("theme")
    recommendation = body.get("recommendation")
    actor = body.get("actor")
    if isinstance(theme, dict) and isinstance(recommendation, dict) and isinstance(actor, dict):
        text += (
            f": theme {theme.get('label')!r} ({theme.get('impactTier')} impact), "
            f"recommendation {recommendation.get('title')!r}, "
            f"evidence snippets: {snippets}, sent by {actor.get('name')}"
        )
    return text


def _suffix(message: object) -> str:
    return f": {message}" if message else ""


def prepare_database(engine: Engine) -> dict[DemoMember, str]:
    """Migrate, then create or refresh the demo workspace, members and themes.

    Running it again on the same database keeps the rows and gives each member a new token.

    Returns:
        A new API token for each demo member.
    """
    from api.tokens import hash_token, new_token
    from schema.migrate import upgrade

    upgrade(engine)
    tokens: dict[DemoMember, str] = {}
    with engine.begin() as connection:
        exists = connection.execute(
            select(workspaces.c.id).where(workspaces.c.id == WORKSPACE_ID)
        ).first()
        if not exists:
            connection.execute(
                insert(workspaces).values(id=WORKSPACE_ID, name=WORKSPACE_NAME, plan_tier=PLAN_TIER)
            )

        for member in (OWNER, ADMIN, MEMBER):
            token: str = new_token()
            values = {
                "permissions": list(member.permissions),
                "assistant_ids": list(member.assistant_ids),
                "token_hash": hash_token(token),
            }
            member_id = connection.execute(
                select(members.c.id).where(
                    members.c.workspace_id == WORKSPACE_ID,
                    members.c.name == member.name,
                    members.c.role == member.role,
                )
            ).scalar()
            if member_id is None:
                connection.execute(
                    insert(members).values(
                        id=str(uuid.uuid4()),
                        workspace_id=WORKSPACE_ID,
                        name=member.name,
                        role=member.role,
                        **values,
                    )
                )
            else:
                connection.execute(update(members).where(members.c.id == member_id).values(values))
            tokens[member] = token

        upsert_themes(connection, parse_themes(DEMO_THEMES))
    return tokens


def _child_environment(
    source: Mapping[str, str], data_dir: Path, database_url: str, broker_url: str
) -> dict[str, str]:
    env = dict(source)
    env.update(
        {
            "DATABASE_URL": database_url,
            "BROKER_URL": broker_url,
            "HANDOFF_ALLOW_PRIVATE_TARGETS": "true",
            "HANDOFF_LOG_FORMAT": "json",
            "HANDOFF_DATA_DIR": str(data_dir),
        }
    )
    if not env.get("HANDOFF_RESOLVER_HOSTS", "").strip():
        # The receiver is an IP literal, so nothing needs resolving; a hosts file also makes
        # sure no name the demo meets ever causes a DNS query.
        hosts = data_dir / "hosts"
        hosts.write_text("127.0.0.1 localhost\n::1 localhost\n", encoding="utf-8")
        env["HANDOFF_RESOLVER_HOSTS"] = str(hosts)
    return env


def _wait_until_ready(base_url: str, stop: threading.Event) -> bool:
    deadline = time.monotonic() + READY_TIMEOUT_S
    with httpx.Client(base_url=base_url, timeout=2.0) as client:
        while time.monotonic() < deadline and not stop.is_set():
            try:
                if client.get("/readyz").status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            stop.wait(0.25)
    return False


def _port_is_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # uvicorn sets SO_REUSEADDR too, so a port in TIME_WAIT counts as free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _url_host(host: str) -> str:
    # A wildcard address is for listening; requests go to the loopback address instead.
    if host in ("", "0.0.0.0"):  # noqa: S104 - compared, never bound
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


class _Report:
    """The demo's printed report, one flushed line at a time."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def line(self, text: str) -> None:
        print(text, file=self.stream, flush=True)
