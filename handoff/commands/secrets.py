"""The `handoff secrets reencrypt` command: rewrite stored signing secrets under the current key."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from sqlalchemy import Connection, select, update
from sqlalchemy.orm import Session

from handoff.commands import CommandError, database, start_command
from handoff.secret_box import SecretBox, SecretBoxError
from schema.tables import integrations

# The encrypted columns of `integrations`, with the words the error message uses for each.
_SECRET_COLUMNS = {
    "secret_encrypted": "signing secret",
    "previous_secret_encrypted": "previous signing secret",
}


@dataclass(frozen=True)
class ReencryptResult:
    """Counts of the integrations and secrets that `reencrypt_secrets` rewrote."""

    integrations: int
    secrets: int
    under_previous_key: int


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the secrets command group."""
    group = commands.add_parser("secrets", help="manage the encryption of stored signing secrets")
    actions = group.add_subparsers(title="actions", metavar="ACTION", required=True)
    reencrypt = actions.add_parser(
        "reencrypt",
        help="re-encrypt every stored signing secret with the current HANDOFF_SECRET_KEY, "
        "reading old ones with HANDOFF_SECRET_KEY_PREVIOUS",
    )
    reencrypt.set_defaults(handler=reencrypt_command)


def reencrypt_secrets(connection: Session | Connection, box: SecretBox) -> ReencryptResult:
    """Re-encrypt every stored signing secret with the box's current key; never commits.

    The integration rows are locked first, so a secret saved or rotated meanwhile waits for
    this transaction instead of being overwritten with an older value. Run it in one
    transaction: if one secret cannot be decrypted, the caller rolls back and nothing changes.

    Raises:
        CommandError: a stored secret cannot be decrypted with the current or any previous
            key; the message names the workspace.
    """
    rows = connection.execute(
        select(
            integrations.c.workspace_id,
            integrations.c.secret_encrypted,
            integrations.c.previous_secret_encrypted,
        )
        .order_by(integrations.c.workspace_id)
        .with_for_update()
    ).all()

    rewritten = 0
    under_previous_key = 0
    for row in rows:
        values: dict[str, bytes] = {}
        for column, description in _SECRET_COLUMNS.items():
            ciphertext = getattr(row, column)
            if ciphertext is None:
                continue
            try:
                values[column] = box.reencrypt(ciphertext)
            except SecretBoxError as error:
                raise CommandError(
                    f"workspace {row.workspace_id!r}: the {description} cannot be decrypted with "
                    "HANDOFF_SECRET_KEY or HANDOFF_SECRET_KEY_PREVIOUS; add the key it was saved "
                    "with to HANDOFF_SECRET_KEY_PREVIOUS. Nothing was re-encrypted"
                ) from error
            if not box.is_current(ciphertext):
                under_previous_key += 1
        if values:
            connection.execute(
                update(integrations)
                .where(integrations.c.workspace_id == row.workspace_id)
                .values(**values)
            )
            rewritten += len(values)
    return ReencryptResult(
        integrations=len(rows), secrets=rewritten, under_previous_key=under_previous_key
    )


def reencrypt_command(args: argparse.Namespace) -> int:
    """Re-encrypt every stored signing secret in one transaction and print the counts."""
    settings = start_command("database_url", "secret_key")
    box = SecretBox.from_settings(settings)
    with database(settings) as engine, Session(engine) as session, session.begin():
        result = reencrypt_secrets(session, box)
    print(
        f"re-encrypted {result.secrets} signing secrets of {result.integrations} integrations "
        f"with the current HANDOFF_SECRET_KEY ({result.under_previous_key} were under a "
        "previous key)"
    )
    return 0
