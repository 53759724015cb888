"""Request dependencies: the app's engine and settings, and bearer authentication of the caller."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from api.errors import Forbidden, Unauthenticated
from api.tokens import hash_token
from handoff.settings import Settings
from outbox.enqueue import ADMIN_ROLES
from schema.tables import members, operator_tokens

# Longer headers are rejected before hashing; real tokens are about 46 characters.
MAX_TOKEN_LENGTH = 512


@dataclass(frozen=True)
class Member:
    """A workspace member authenticated by its token."""

    id: str
    workspace_id: str
    name: str
    role: str
    permissions: tuple[str, ...]
    assistant_ids: tuple[str, ...]

    @property
    def is_admin(self) -> bool:
        """Whether the member is an owner or admin, who have every permission."""
        return self.role in ADMIN_ROLES


@dataclass(frozen=True)
class Operator:
    """An operator token: the ops endpoints of every workspace, no workspace endpoint."""

    id: str


Caller = Member | Operator


def get_engine(request: Request) -> Engine:
    """Return the engine `create_app` stored on the application."""
    engine: Engine = request.app.state.engine
    return engine


def get_settings(request: Request) -> Settings:
    """Return the settings `create_app` stored on the application."""
    settings: Settings = request.app.state.settings
    return settings


def _bearer_token(request: Request) -> str:
    header = request.headers.get("authorization")
    if header is None:
        raise Unauthenticated("missing bearer token: send the header Authorization: Bearer <token>")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("malformed Authorization header: send Authorization: Bearer <token>")
    if len(token) > MAX_TOKEN_LENGTH:
        raise Unauthenticated("invalid bearer token: ask an Owner for a new token")
    return token


def _same_hash(stored: bytes, computed: bytes) -> bool:
    # The index lookup's timing can reveal at most how a SHA-256 digest compares with stored
    # ones, which a caller cannot steer byte by byte. The final check is constant-time too.
    return hmac.compare_digest(bytes(stored), computed)


def find_caller(engine: Engine, digest: bytes) -> Caller | None:
    """Return the member or operator whose token hashes to `digest`, or None for no match.

    Tokens are stored only as SHA-256 hashes: the row is looked up by hash, and the stored
    hash is then compared with `digest` in constant time.
    """
    with Session(engine) as session:
        member = session.execute(
            select(
                members.c.id,
                members.c.workspace_id,
                members.c.name,
                members.c.role,
                members.c.permissions,
                members.c.assistant_ids,
                members.c.token_hash,
            ).where(members.c.token_hash == digest)
        ).one_or_none()
        if member is not None and _same_hash(member.token_hash, digest):
            return Member(
                id=str(member.id),
                workspace_id=member.workspace_id,
                name=member.name,
                role=member.role,
                permissions=tuple(member.permissions),
                assistant_ids=tuple(member.assistant_ids),
            )
        operator = session.execute(
            select(operator_tokens.c.id, operator_tokens.c.token_hash).where(
                operator_tokens.c.token_hash == digest
            )
        ).one_or_none()
    if operator is not None and _same_hash(operator.token_hash, digest):
        return Operator(id=str(operator.id))
    return None


def authenticate(request: Request, engine: Annotated[Engine, Depends(get_engine)]) -> Caller:
    """Resolve the request's bearer token to a member or an operator.

    Raises:
        Unauthenticated: the header is missing or malformed, or the token is unknown.
    """
    caller = find_caller(engine, hash_token(_bearer_token(request)))
    if caller is None:
        raise Unauthenticated("invalid bearer token: ask an Owner for a new token")
    return caller


def require_member(caller: Annotated[Caller, Depends(authenticate)]) -> Member:
    """Return the calling member; an operator token is refused on workspace endpoints.

    Raises:
        Forbidden: the token is an operator token.
    """
    if isinstance(caller, Operator):
        raise Forbidden(
            "not permitted: an operator token only reads the operations endpoints; "
            "use a member token of the workspace"
        )
    return caller


def check_admin(member: Member) -> None:
    """Raise Forbidden unless the member is an owner or admin of its workspace."""
    if not member.is_admin:
        raise Forbidden(
            "not permitted: only an Admin or Owner of the workspace can use this endpoint"
        )


def require_admin(member: Annotated[Member, Depends(require_member)]) -> Member:
    """Return the calling member if it is an owner or admin.

    Raises:
        Forbidden: an operator token, or a member with the role `member`.
    """
    check_admin(member)
    return member


CurrentMember = Annotated[Member, Depends(require_member)]
CurrentAdmin = Annotated[Member, Depends(require_admin)]
CurrentEngine = Annotated[Engine, Depends(get_engine)]
CurrentSettings = Annotated[Settings, Depends(get_settings)]
