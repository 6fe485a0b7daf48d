"""Virtual keys: hashed at rest, shown once, scoped, revocable (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from lockgate.gateway.keys_cli import parse_expiry
from lockgate.registry import InvalidInput, NotFound, Registry
from lockgate.registry.calls import NewCall
from lockgate.registry.tables import ApiKey


def test_key_is_shown_once_and_stored_hashed(registry: Registry) -> None:
    key = registry.keys.create("ci", models=["gpt-4o-mini"], rpm=60, budget_usd=5)
    assert key.secret is not None and key.secret.startswith("lg-") and len(key.secret) > 40
    with registry.db.read() as session:
        row = session.scalars(select(ApiKey)).one()
        stored = json.dumps({c.name: str(getattr(row, c.name)) for c in ApiKey.__table__.columns})
    assert key.secret not in stored
    assert row.prefix == key.secret[:10]
    found = registry.keys.lookup(key.secret)
    assert found is not None and found.id == key.id and found.secret is None
    assert found.allows_model("gpt-4o-mini") and not found.allows_model("gpt-4o")
    assert found.has_scope("inference") and not found.has_scope("admin")
    assert registry.keys.lookup(key.secret + "x") is None


def test_revoke_and_expiry(registry: Registry) -> None:
    key = registry.keys.create("old", expires_at=datetime.now(UTC) - timedelta(seconds=1))
    assert not registry.keys.lookup(key.secret).active()  # type: ignore[arg-type, union-attr]
    live = registry.keys.create("live", scopes=["admin"])
    assert registry.keys.lookup(live.secret).active()  # type: ignore[arg-type, union-attr]
    registry.keys.revoke(live.prefix)
    assert not registry.keys.lookup(live.secret).active()  # type: ignore[arg-type, union-attr]
    with pytest.raises(NotFound):
        registry.keys.revoke("lg-nothing")


def test_spend_comes_from_call_records(registry: Registry) -> None:
    key = registry.keys.create("team")
    registry.calls.record(
        [
            NewCall(request_id=f"r{i}", operation="chat", status_code=200, latency_ms=1.0,
                    key_id=key.id, cost_usd=0.25)
            for i in range(3)
        ]
    )  # fmt: skip
    assert registry.keys.spend(key.id) == pytest.approx(0.75)
    assert registry.keys.list()[0].spent_usd == pytest.approx(0.75)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scopes": ["root"]}, "unknown scope"),
        ({"rpm": 0}, "rpm must be between 1 and"),
        ({"tpm": 10**12}, "tpm must be between 1 and 2147483647"),
        ({"budget_usd": -1}, "budget_usd must be positive"),
    ],
)
def test_bad_key_settings(registry: Registry, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        registry.keys.create("x", **kwargs)  # type: ignore[arg-type]
    assert registry.keys.list() == []


def test_expiry_parsing() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_expiry("30d", now) == now + timedelta(days=30)
    assert parse_expiry("2026-02-01T00:00:00", now) == datetime(2026, 2, 1, tzinfo=UTC)
    with pytest.raises(InvalidInput, match="duration like 30d"):
        parse_expiry("soon", now)
