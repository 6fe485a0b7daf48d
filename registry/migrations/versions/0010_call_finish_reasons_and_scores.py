"""Call records: the finish reason; call scores: judges' scores of sampled calls.

- ``call_records.finish_reason``: how the upstream's answer ended (``stop``, ``length``,
  ``tool_calls``, ``content_filter``; the last one a stream sent), for traffic drift;
- ``call_scores``: one row per sampled call an LLM judge scored (``gateway.judges``).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-22 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("call_records", schema=None) as batch_op:
        batch_op.add_column(sa.Column("finish_reason", sa.String(length=40), nullable=True))
    op.create_table(
        "call_scores",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("trace_id", sa.String(length=32), nullable=True),
        sa.Column("route", sa.String(length=200), nullable=True),
        sa.Column("model", sa.String(length=200), nullable=True),
        sa.Column("prompt_name", sa.String(length=200), nullable=True),
        sa.Column("prompt_version", sa.Integer(), nullable=True),
        sa.Column("judge", sa.String(length=100), nullable=False),
        sa.Column("rubric", sa.String(length=300), nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("raw_score", sa.Float(), nullable=True),
        sa.Column("error", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_call_scores_created", "call_scores", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_call_scores_created", table_name="call_scores")
    op.drop_table("call_scores")
    with op.batch_alter_table("call_records", schema=None) as batch_op:
        batch_op.drop_column("finish_reason")
