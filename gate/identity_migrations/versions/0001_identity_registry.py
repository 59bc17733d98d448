"""Identity registry: persons and their documents.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "persons",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("surname", sa.String(120), nullable=False),
        sa.Column("given_names", sa.String(120), nullable=False),
        sa.Column("surname_key", sa.String(120), nullable=False),
        sa.Column("given_names_key", sa.String(120), nullable=False),
        sa.Column("date_of_birth", sa.Date, nullable=True),
        sa.Column("nationality", sa.String(3), nullable=True),
        sa.Column("exit_ban", sa.Boolean, nullable=False),
        sa.Column("watch_list", sa.Boolean, nullable=False),
    )
    op.create_index("ix_persons_surname_key", "persons", ["surname_key"])
    op.create_table(
        "documents",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("person_id", sa.Integer, sa.ForeignKey("persons.id"), nullable=False),
        sa.Column("number", sa.String(20), nullable=False),
        sa.Column("number_key", sa.String(20), nullable=False),
        sa.Column("issuing_state", sa.String(3), nullable=False),
        sa.Column("document_type", sa.String(2), nullable=False),
        sa.Column("date_of_expiry", sa.Date, nullable=True),
        sa.Column("status", sa.Enum("VALID", "REVOKED", "LOST", "STOLEN", name="documentstatus",
                                    native_enum=False, length=10), nullable=False),
        sa.UniqueConstraint("number_key", "issuing_state"),
    )


def downgrade() -> None:
    op.drop_table("documents")
    op.drop_index("ix_persons_surname_key", "persons")
    op.drop_table("persons")
