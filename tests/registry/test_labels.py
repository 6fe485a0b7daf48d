"""Labels: compare-and-set moves and their append-only history (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading

import pytest

from lockgate.registry import Conflict, InvalidInput, NotFound, Registry, RegistrySettings


@pytest.fixture
def two_versions(registry: Registry) -> Registry:
    registry.prompts.push("qa", "one {{ q }}")
    registry.prompts.push("qa", "two {{ q }}")
    return registry


def test_move_and_history_record_actor_time_from_to_reason(two_versions: Registry) -> None:
    reg = two_versions
    reg.labels.set("prompt", "qa", "production", 1, reason="first ship")
    reg.labels.set("prompt", "qa", "production", 2, expect_version=1, actor="ci", reason="eval ok")
    moves = reg.labels.history("prompt", "qa", "production")
    assert [(m.from_version, m.to_version, m.actor, m.reason) for m in moves] == [
        (None, 1, "tester", "first ship"),
        (1, 2, "ci", "eval ok"),
    ]
    assert moves[0].created_at <= moves[1].created_at
    assert reg.prompts.get("qa@production").version == 2
    # the whole history includes the automatic `latest` moves
    assert [m.label for m in reg.labels.history("prompt", "qa")].count("latest") == 2


def test_stale_expect_fails_and_changes_nothing(two_versions: Registry) -> None:
    reg = two_versions
    reg.labels.set("prompt", "qa", "production", 2)
    with pytest.raises(Conflict, match="points to version 2, expected version 1"):
        reg.labels.set("prompt", "qa", "production", 1, expect_version=1)
    assert reg.prompts.get("qa@production").version == 2
    assert len(reg.labels.history("prompt", "qa", "production")) == 1


def test_expect_absent(two_versions: Registry) -> None:
    reg = two_versions
    reg.labels.set("prompt", "qa", "staging", 1, expect_absent=True)
    with pytest.raises(Conflict, match="expected it to be unset"):
        reg.labels.set("prompt", "qa", "staging", 2, expect_absent=True)


def test_bad_labels_and_versions(two_versions: Registry) -> None:
    reg = two_versions
    with pytest.raises(InvalidInput, match="maintained by lockgate"):
        reg.labels.set("prompt", "qa", "latest", 1)
    with pytest.raises(InvalidInput, match="invalid label"):
        reg.labels.set("prompt", "qa", "Prod'; --", 1)
    with pytest.raises(NotFound, match="no version 7"):
        reg.labels.set("prompt", "qa", "production", 7)
    with pytest.raises(NotFound, match="no prompt named"):
        reg.labels.set("prompt", "missing", "production", 1)
    assert "production" not in reg.labels.of("prompt", "qa")


def test_concurrent_moves_with_same_expect_one_wins(
    two_versions: Registry, registry_settings: RegistrySettings
) -> None:
    two_versions.labels.set("prompt", "qa", "production", 1)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def move(target: int) -> None:
        reg = Registry(registry_settings, actor=f"writer-{target}")
        try:
            barrier.wait()
            reg.labels.set("prompt", "qa", "production", target, expect_version=1)
            outcomes.append("won")
        except Conflict:
            outcomes.append("conflict")
        finally:
            reg.close()

    threads = [threading.Thread(target=move, args=(v,)) for v in (2, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["conflict", "won"]
    assert len(two_versions.labels.history("prompt", "qa", "production")) == 2
