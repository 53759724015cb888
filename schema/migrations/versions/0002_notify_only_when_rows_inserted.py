"""Wake the relay only for a statement that inserted outbox rows.

A statement-level trigger fires for an INSERT of no rows too. Every worker record contains
an INSERT into `outbox` for its due retries, so each record sent a NOTIFY at commit and
woke the relay for nothing. The trigger now reads the inserted rows through a transition
table and notifies only when there is at least one.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS outbox_notify ON outbox")
    op.execute(
        """
        CREATE OR REPLACE FUNCTION handoff_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF EXISTS (SELECT 1 FROM inserted) THEN
                PERFORM pg_notify('handoff_outbox', '');
            END IF;
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER outbox_notify AFTER INSERT ON outbox REFERENCING NEW TABLE AS inserted "
        "FOR EACH STATEMENT EXECUTE FUNCTION handoff_outbox_notify()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS outbox_notify ON outbox")
    op.execute(
        """
        CREATE OR REPLACE FUNCTION handoff_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('handoff_outbox', '');
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER outbox_notify AFTER INSERT ON outbox "
        "FOR EACH STATEMENT EXECUTE FUNCTION handoff_outbox_notify()"
    )
