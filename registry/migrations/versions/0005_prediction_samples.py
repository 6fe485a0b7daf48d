"""Prediction samples: input rows and predictions of scikit-learn models served by the gateway.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-10 09:00:00.000000
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "prediction_samples",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("trace_id", sa.String(length=32), nullable=True),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("inputs", _json(), nullable=False),
        sa.Column("prediction", _json(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("prediction_samples", schema=None) as batch_op:
        batch_op.create_index(
            "ix_prediction_samples_model", ["model", "version", "created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("prediction_samples", schema=None) as batch_op:
        batch_op.drop_index("ix_prediction_samples_model")

    op.drop_table("prediction_samples")
