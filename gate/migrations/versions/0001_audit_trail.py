"""Audit trail: hash-chained records and the chain-head row that serialises appends.

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

GENESIS = "0" * 64


def upgrade() -> None:
    head = op.create_table(
        "audit_chain_head",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": GENESIS}])
    op.create_table(
        "audit_records",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("seq", sa.BigInteger, nullable=False, unique=True),
        sa.Column("occurred_at", sa.DateTime, nullable=False, index=True),
        sa.Column("recorded_at", sa.DateTime, nullable=False),
        sa.Column("event_type", sa.String(32), nullable=False, index=True),
        sa.Column("gate_id", sa.String(64), nullable=False, index=True),
        sa.Column("transaction_id", sa.String(64), index=True),
        sa.Column("outcome", sa.String(32), index=True),
        sa.Column("reason_codes", sa.Text, nullable=False),
        sa.Column("checks", sa.Text, nullable=False),
        sa.Column("actor", sa.String(64), index=True),
        sa.Column("document_ref", sa.String(64), index=True),
        sa.Column("person_ref", sa.String(64)),
        sa.Column("personal_digest", sa.String(64), nullable=False),
        sa.Column("face_image", sa.LargeBinary),
        sa.Column("face_digest", sa.String(64), nullable=False),
        sa.Column("personal_purged_at", sa.DateTime),
        sa.Column("face_purged_at", sa.DateTime),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("audit_records")
    op.drop_table("audit_chain_head")
