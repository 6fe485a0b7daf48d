"""The registry is composed of parts over one database, and names things one way."""

from __future__ import annotations

from pathlib import Path

import pytest

from lockgate.registry import InvalidInput, NotFound, Registry
from lockgate.registry.calls import NEW_CALL_FIELDS, NewCall
from lockgate.registry.tables import CallRecord

PARTS = ("prompts", "models", "labels", "datasets", "runs", "artifacts", "keys", "jobs",
         "files", "calls", "gates")  # fmt: skip


def test_the_registry_is_its_parts_over_one_database(registry: Registry) -> None:
    public = {name for name in vars(registry) if not name.startswith("_")}
    assert set(PARTS) <= public
    methods = [n for n in dir(type(registry)) if not n.startswith("_")]
    assert sorted(methods) == ["actor", "close"]  # everything else lives in a part
    for name in PARTS:
        part = getattr(registry, name)
        if name != "artifacts":
            assert part.db is registry.db


def test_a_call_record_carries_every_column_and_nothing_else() -> None:
    columns = {c.name for c in CallRecord.__table__.columns} - {"id"}
    assert set(NEW_CALL_FIELDS) == columns  # a new column is a new field, never dropped
    with pytest.raises(TypeError, match="unexpected keyword argument 'promt_name'"):
        NewCall(request_id="r", operation="chat", status_code=200, latency_ms=1.0,
                promt_name="qa")  # type: ignore[call-arg]  # fmt: skip


def test_a_call_record_must_be_typed(registry: Registry) -> None:
    with pytest.raises(InvalidInput, match="NewCall, not dict"):
        registry.calls.record([{"request_id": "r"}])  # type: ignore[list-item]
    assert registry.calls.list() == []


def test_datasets_take_the_same_references_as_everything_else(
    registry: Registry, tmp_path: Path
) -> None:
    data = tmp_path / "qa.jsonl"
    data.write_text('{"q": "a"}\n')
    first, _ = registry.datasets.add("qa", data)
    data.write_text('{"q": "b"}\n')
    second, _ = registry.datasets.add("qa", data)
    assert registry.datasets.get("qa").version == second.version == 2
    assert registry.datasets.get("qa@latest").version == 2
    assert registry.datasets.get("qa@1").digest == first.digest
    assert registry.datasets.get("qa@v1").digest == first.digest
    with pytest.raises(InvalidInput, match="datasets are named by version, not by label"):
        registry.datasets.get("qa@production")
    with pytest.raises(NotFound, match="has no version 9"):
        registry.datasets.get("qa@9")
    out = registry.datasets.fetch("qa@1", tmp_path / "out")
    assert out.read_text() == '{"q": "a"}\n'
