"""Gate limits: drift and service limits on gate policies, and the checks a label move saw.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-16 10:00:00.000000
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("gate_policies", schema=None) as batch_op:
        batch_op.add_column(sa.Column("limits", _json(), nullable=True))
    with op.batch_alter_table("label_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("checks", _json(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("label_events", schema=None) as batch_op:
        batch_op.drop_column("checks")
    with op.batch_alter_table("gate_policies", schema=None) as batch_op:
        batch_op.drop_column("limits")
