"""Call records: an index per filter of the call viewer, each ending in the record number.

The viewer (``/ui/calls``, ``/api/v1/calls``, ``lockgate calls``) reads one page of records
``WHERE <filter> AND id < :before ORDER BY id DESC LIMIT n``. With ``(filter column, id)``
the database walks one index range backwards and stops after a page, however many records
there are and however rare the value; without it, it walks the whole table for a rare value.

- new: ``(route, id)``, ``(model, id)``, ``(status_code, id)``;
- ``(key_id)`` becomes ``(key_id, id)`` and ``(prompt_name, prompt_version)`` becomes
  ``(prompt_name, prompt_version, id)``: the wider index serves every query the narrower did.

On PostgreSQL the indexes are built inside the upgrade's transaction: on a large
``call_records`` table the upgrade takes a while and the gateway's writes of call records
wait for it (run ``lockgate db upgrade`` in a quiet hour).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-21 09:00:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

NEW = {
    "ix_call_records_route_id": ["route", "id"],
    "ix_call_records_model_id": ["model", "id"],
    "ix_call_records_status_id": ["status_code", "id"],
    "ix_call_records_key_id": ["key_id", "id"],
    "ix_call_records_prompt_id": ["prompt_name", "prompt_version", "id"],
}
REPLACED = {
    "ix_call_records_key": ["key_id"],
    "ix_call_records_prompt": ["prompt_name", "prompt_version"],
}


def upgrade() -> None:
    for name, columns in NEW.items():
        op.create_index(name, "call_records", columns)
    for name in REPLACED:
        op.drop_index(name, table_name="call_records")


def downgrade() -> None:
    for name, columns in REPLACED.items():
        op.create_index(name, "call_records", columns)
    for name in NEW:
        op.drop_index(name, table_name="call_records")
