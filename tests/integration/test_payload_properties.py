"""Property tests of the event body: any Unicode in any text field still enqueues and verifies.

Text reaches an event three ways: the themes file (label, recommendation, evidence), the
handoff request (range strings, sources) and the CLI (actor and company names, which Postgres
stores after the CLI rejects NUL). Every body must parse as JSON, stay within 64 KiB, carry no
NUL or lone surrogate, and verify with an independent HMAC.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import standardwebhooks
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from api.app import create_app
from api.body_limit import MAX_BODY_BYTES as MAX_REQUEST_BYTES
from handoff.settings import Settings
from handoff.themes_file import read_themes_file, upsert_themes
from outbox import enqueue_handoff
from outbox.errors import InvalidHandoff
from outbox.events import (
    MAX_BODY_BYTES,
    MAX_EVIDENCE_SNIPPETS,
    MAX_SNIPPET_CODE_POINTS,
    Actor,
    Theme,
    Workspace,
    build_handoff_body,
    parse_range,
    parse_sources,
)
from outbox.text import clean_text, cut_text
from schema.tables import deliveries, members, workspaces
from tests.integration.harness import Pipeline
from tests.receivers import Receiver
from tests.seed import Seeded, seed_workspace
from worker.signing import build_headers, generate_secret

TIMESTAMP = 1_760_000_000
PLAIN_SECRET = "plain sécret \U0001f511"
MAX_SOURCES = 50

# Characters Postgres or JSON cannot carry, or that are easy to split wrongly.
AWKWARD = ["\x00", "\ud800", "\udbff", "\udc00", "\udfff", "\U0001f600", "\u2028", "\x7f", "…"]
# Strings are joined from single characters: `st.text` would merge these strategies into
# one range of code points and almost never draw a NUL or a surrogate.
any_character = st.one_of(
    st.sampled_from(AWKWARD), st.characters(codec="ascii"), st.characters(exclude_categories=())
)
short_text = st.lists(any_character, max_size=40).map("".join)
# Repetition makes huge strings cheaply: up to 150,000 characters, astral ones included.
huge_text = st.builds(lambda part, times: part * times, short_text, st.integers(0, 4000))
any_text = st.one_of(short_text, huge_text)

offsets = st.builds(
    timezone, st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23))
)
later_dates = st.one_of(
    st.dates(min_value=date(2001, 1, 1)).map(lambda day: day.isoformat()),
    st.datetimes(min_value=datetime(2001, 1, 1), timezones=offsets).map(
        lambda moment: moment.isoformat()
    ),
    st.datetimes(min_value=datetime(2001, 1, 1)).map(lambda moment: moment.isoformat() + "Z"),
)
any_date_text = st.one_of(
    later_dates,
    st.sampled_from(["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00", "2026-02-15Z"]),
    short_text,
)
valid_ranges = st.one_of(
    st.fixed_dictionaries({"preset": st.sampled_from(["7d", "30d", "90d"])}),
    st.fixed_dictionaries(
        {"from": st.just("2000-01-01"), "to": later_dates},
        optional={"preset": st.sampled_from(["7d", "30d", "90d"])},
    ),
)
any_ranges = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "from": any_date_text,
            "to": any_date_text,
            "preset": st.one_of(st.sampled_from(["7d", "30d", "90d"]), short_text, st.none()),
        },
    ),
    st.none(),
    short_text,
    st.lists(short_text, max_size=2),
)
ranges = st.one_of(valid_ranges, any_ranges)
# A request's range is an object with dates or text, so that most requests build a body.
request_ranges = st.one_of(
    valid_ranges, st.fixed_dictionaries({"from": any_date_text, "to": any_date_text})
)
sources_lists = st.one_of(
    st.none(),
    st.lists(any_text, max_size=MAX_SOURCES),
    st.lists(short_text, min_size=MAX_SOURCES + 1, max_size=MAX_SOURCES + 5),
)
# A request body stays under the 64 KiB request limit unless a huge source is drawn.
medium_text = st.builds(lambda part, times: part * times, short_text, st.integers(0, 20))
request_sources = st.one_of(
    st.none(),
    st.lists(st.one_of(short_text, medium_text), max_size=MAX_SOURCES),
    st.lists(short_text, min_size=MAX_SOURCES + 1, max_size=MAX_SOURCES + 5),
    st.lists(huge_text, min_size=1, max_size=2),
)

# The fixtures (a database, a tally) are shared by every example of one test on purpose.
_HEALTH = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large]
fast = settings(
    max_examples=300, deadline=None, derandomize=True, database=None, suppress_health_check=_HEALTH
)
with_database = settings(
    max_examples=40, deadline=None, derandomize=True, database=None, suppress_health_check=_HEALTH
)


@pytest.fixture
def built() -> Iterator[list[bool]]:
    """Records whether each example built a body; a third must, or the test shows little."""
    outcomes: list[bool] = []
    yield outcomes
    assert sum(outcomes) * 3 >= len(outcomes), f"{sum(outcomes)} of {len(outcomes)} built a body"


def strings_in(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)


def is_expected_rejection(error: InvalidHandoff, sources: Any) -> bool:
    """Tell whether `error` is the correct rejection: an invalid range, or too many sources."""
    if error.field.startswith("range"):
        return True
    return error.field == "sources" and isinstance(sources, list) and len(sources) > MAX_SOURCES


def check_body(body: bytes, evidence: list[str]) -> dict[str, Any]:
    """Assert the size budget, valid text, the evidence rules and both signatures."""
    assert len(body) <= MAX_BODY_BYTES
    data: dict[str, Any] = json.loads(body.decode("utf-8"))
    for text in strings_in(data):
        assert "\x00" not in text
        assert not any(0xD800 <= ord(character) <= 0xDFFF for character in text)

    expected = [cut_text(clean_text(snippet), MAX_SNIPPET_CODE_POINTS) for snippet in evidence]
    shown = [item["snippet"] for item in data["evidence"]]
    assert len(evidence) == data["evidenceTotal"]
    assert len(shown) <= MAX_EVIDENCE_SNIPPETS
    assert expected[: len(shown)] == shown
    assert all(len(snippet) <= MAX_SNIPPET_CODE_POINTS for snippet in shown)

    headers = build_headers(
        delivery_id=data["deliveryId"],
        event=data["event"],
        provider="generic",
        timestamp=TIMESTAMP,
        body=body,
        secrets=[PLAIN_SECRET],
        user_agent="test",
    )
    digest = hmac.new(
        PLAIN_SECRET.encode("utf-8"), f"{TIMESTAMP}.".encode() + body, hashlib.sha256
    ).hexdigest()
    assert f"v1={digest}" == headers["X-Sol-Signature"]
    return data


@given(
    label=any_text,
    title=any_text,
    next_step=any_text,
    evidence=st.lists(any_text, max_size=15),
    actor_name=any_text,
    company_name=any_text,
    date_range=ranges,
    sources=sources_lists,
)
@example(
    label="\x00",
    title="\ud800",
    next_step="\udfff\x00",
    evidence=["\x00" * 1500, "a\ud83d", "\U0001f600" * 1001, "\x01" * 20_000],
    actor_name="\x00",
    company_name="\udc00",
    date_range={"from": "2026-01-01", "to": "2026-02-01T00:00:00+05:30"},
    sources=["\x00", "\ud800"],
)
@fast
def test_any_text_builds_a_valid_body(
    built: list[bool],
    label: str,
    title: str,
    next_step: str,
    evidence: list[str],
    actor_name: str,
    company_name: str,
    date_range: Any,
    sources: Any,
) -> None:
    now = datetime.now(UTC)
    try:
        parsed_range = parse_range(date_range, now)
        parsed_sources = parse_sources(sources)
    except InvalidHandoff as error:
        assert is_expected_rejection(error, sources), error
        built.append(False)
        return

    body = build_handoff_body(
        delivery_id=str(uuid.uuid4()),
        created_at=now,
        workspace=Workspace(company_id="acme", company_name=company_name, plan_tier="GROWTH"),
        actor=Actor(user_id=str(uuid.uuid4()), name=actor_name, role="member"),
        theme=Theme(
            id="permissions",
            assistant_id="asst_123",
            label=label,
            conversation_count=len(evidence),
            impact_tier="High",
            confidence="Low",
            recommendation_title=title,
            recommendation_next_step=next_step,
            evidence=evidence,
        ),
        date_range=parsed_range,
        sources=parsed_sources,
        app_base_url="https://app.solhelps.com",
    )

    data = check_body(body, evidence)
    assert len(parsed_sources) == len(data["scope"]["sources"])
    built.append(True)


@pytest.fixture
def seeded(engine: Engine) -> Seeded:
    return seed_workspace(engine, url="http://127.0.0.1:9/hook")


def load_theme_file(engine: Engine, path: Path, theme: dict[str, Any]) -> None:
    """Write one theme as `handoff themes load` reads it, then load it in one transaction."""
    # ensure_ascii escapes lone surrogates and NUL, as a JSON producer in any language does.
    path.write_text(json.dumps([theme], ensure_ascii=True), encoding="utf-8")
    records = read_themes_file(path)
    with Session(engine) as session, session.begin():
        upsert_themes(session, records)


def stored_body(engine: Engine, delivery_id: str) -> bytes:
    with engine.connect() as connection:
        return bytes(
            connection.execute(
                select(deliveries.c.body).where(deliveries.c.id == delivery_id)
            ).scalar_one()
        )


@given(
    label=any_text,
    title=any_text,
    next_step=any_text,
    evidence=st.lists(any_text, max_size=15),
    actor_name=any_text,
    company_name=any_text,
    date_range=ranges,
    sources=sources_lists,
)
@example(
    label="\x00",
    title="\ud800",
    next_step="\udfff",
    evidence=["\x00" * 1500, "a\ud83d", "\U0001f600" * 1001],
    actor_name="\udc00 name",
    company_name="Acme \x00",
    date_range={"preset": "7d"},
    sources=["\x00", "\ud800"],
)
@with_database
def test_themes_file_and_product_code_always_enqueue(
    engine: Engine,
    settings: Settings,
    seeded: Seeded,
    tmp_path: Path,
    built: list[bool],
    label: str,
    title: str,
    next_step: str,
    evidence: list[str],
    actor_name: str,
    company_name: str,
    date_range: Any,
    sources: Any,
) -> None:
    # A label and a title must not be blank in a themes file; the prefix keeps them valid.
    theme = {
        "workspaceId": seeded.workspace_id,
        "assistantId": seeded.assistant_id,
        "id": "fuzzed",
        "label": "L" + label,
        "conversationCount": 3,
        "impactTier": "High",
        "confidence": "Medium",
        "recommendation": {"title": "T" + title, "nextStep": next_step},
        "evidence": [{"snippet": snippet} for snippet in evidence],
    }
    load_theme_file(engine, tmp_path / "themes.json", theme)
    with engine.begin() as connection:
        connection.execute(
            update(members)
            .where(members.c.id == seeded.member_id)
            .values(name=clean_text(actor_name.replace("\x00", "")))
        )
        connection.execute(
            update(workspaces)
            .where(workspaces.c.id == seeded.workspace_id)
            .values(name=clean_text(company_name.replace("\x00", "")))
        )

    try:
        with Session(engine) as session, session.begin():
            delivery_id = enqueue_handoff(
                session,
                workspace_id=seeded.workspace_id,
                actor_id=seeded.member_id,
                theme_id="fuzzed",
                assistant_id=seeded.assistant_id,
                range=date_range,
                sources=sources,
                settings=settings,
            )
    except InvalidHandoff as error:
        assert is_expected_rejection(error, sources), error
        built.append(False)
        return

    data = check_body(stored_body(engine, delivery_id), evidence)
    assert clean_text("L" + label).startswith(data["theme"]["label"].removesuffix("…"))
    built.append(True)


@given(date_range=request_ranges, sources=request_sources)
@with_database
def test_handoff_request_never_fails_on_text(
    engine: Engine,
    settings: Settings,
    seeded: Seeded,
    built: list[bool],
    date_range: Any,
    sources: Any,
) -> None:
    body: dict[str, Any] = {"assistantId": seeded.assistant_id, "range": date_range}
    if sources is not None:
        body["sources"] = sources
    content = json.dumps(body, ensure_ascii=True).encode("ascii")

    with TestClient(create_app(settings, engine)) as client:
        response = client.post(
            f"/api/v1/insights/themes/{seeded.theme_id}/handoff",
            headers={
                "Authorization": f"Bearer {seeded.member_token}",
                "Content-Type": "application/json",
            },
            content=content,
        )

    if len(content) > MAX_REQUEST_BYTES:
        assert 413 == response.status_code, response.text
        assert "payload_too_large" == response.json()["error"]["code"]
        built.append(False)
        return
    if response.status_code == 422:
        message = response.json()["error"]["message"]
        assert message.startswith("range") or (
            message.startswith("sources") and len(sources) > MAX_SOURCES
        ), message
        built.append(False)
        return
    assert 202 == response.status_code, response.text
    data = check_body(
        stored_body(engine, response.json()["deliveryId"]), ["I can't upload", "Who is admin?"]
    )
    expected = [cut_text(clean_text(item), 100) for item in sources or []]
    assert expected == data["scope"]["sources"]
    built.append(True)


def test_nasty_text_delivered_and_verified(
    engine: Engine,
    settings: Settings,
    redis_broker_url: str,
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    secret = generate_secret()
    seeded = seed_workspace(engine, url=receiver.url, secret=secret, secret_key=settings.secret_key)
    evidence = ["\x00" * 1500, "a\ud800b", "\U0001f600" * 2000] + ["é" * 900] * 20
    theme = {
        "workspaceId": seeded.workspace_id,
        "assistantId": seeded.assistant_id,
        "id": "nasty",
        "label": "NUL\x00 and \udfff lone " + "\U0001f4a5" * 2000,
        "conversationCount": 23,
        "impactTier": "High",
        "confidence": "High",
        "recommendation": {"title": "T\x00" * 3000, "nextStep": "\u2028\x7f" * 3000},
        "evidence": [{"snippet": snippet} for snippet in evidence],
    }
    load_theme_file(engine, tmp_path / "themes.json", theme)
    pipeline = Pipeline(settings, engine, redis_broker_url).start()
    try:
        with TestClient(create_app(settings, engine)) as client:
            response = client.post(
                "/api/v1/insights/themes/nasty/handoff",
                headers={
                    "Authorization": f"Bearer {seeded.member_token}",
                    "Content-Type": "application/json",
                },
                content=json.dumps(
                    {
                        "assistantId": seeded.assistant_id,
                        "range": {"from": "2026-01-01", "to": "2026-02-01T00:00:00+05:30"},
                        "sources": ["chat\x00", "\ud83d", "\U0001f600" * 200],
                    },
                    ensure_ascii=True,
                ).encode(),
            )
            delivery_id = response.json()["deliveryId"]
            pipeline.wait_for_status(delivery_id, {"delivered"})
    finally:
        pipeline.close()
    request = receiver.wait_for(1)[0]

    assert 202 == response.status_code
    assert stored_body(engine, delivery_id) == request.body
    data = json.loads(request.body)
    assert len(request.body) <= MAX_BODY_BYTES
    assert len(evidence) == data["evidenceTotal"]
    snippets = [item["snippet"] for item in data["evidence"]]
    assert ["\ufffd" * 999 + "…", "a\ufffdb", "\U0001f600" * 999 + "…"] == snippets[:3]
    assert MAX_EVIDENCE_SNIPPETS == len(snippets)
    assert data["theme"]["label"].startswith("NUL\ufffd and \ufffd lone \U0001f4a5")
    assert ["chat\ufffd", "\ufffd", "\U0001f600" * 99 + "…"] == data["scope"]["sources"]
    assert "2026-01-31T18:30:00.000Z" == data["scope"]["range"]["to"]
    timestamp = request.headers["x-sol-timestamp"]
    digest = hmac.new(
        secret.encode(), timestamp.encode() + b"." + request.body, hashlib.sha256
    ).hexdigest()
    assert f"v1={digest}" == request.headers["x-sol-signature"]
    assert standardwebhooks.Webhook(secret).verify(request.body, request.headers) == data
    assert abs(int(timestamp) - time.time()) < 60
