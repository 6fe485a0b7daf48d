"""Concurrent writers against PostgreSQL (and SQLite): versions stay consecutive, no errors."""

from __future__ import annotations

import multiprocessing as mp

import pytest

from lockgate.registry import Registry, RegistrySettings

WRITERS = 8
PUSHES_EACH = 3


def _push_many(settings_json: str, writer: int, start: mp.synchronize.Event) -> list[int]:  # type: ignore[name-defined]
    settings = RegistrySettings.model_validate_json(settings_json)
    reg = Registry(settings, actor=f"writer-{writer}")
    start.wait()
    try:
        return [
            reg.prompts.push("shared", f"writer {writer} push {i}: {{{{ q }}}}")[0].version
            for i in range(PUSHES_EACH)
        ]
    finally:
        reg.close()


def test_eight_processes_push_one_prompt(
    registry: Registry, registry_settings: RegistrySettings
) -> None:
    ctx = mp.get_context("spawn")
    start = ctx.Manager().Event()
    with ctx.Pool(WRITERS) as pool:
        pending = [
            pool.apply_async(_push_many, (registry_settings.model_dump_json(), w, start))
            for w in range(WRITERS)
        ]
        start.set()
        versions = [v for p in pending for v in p.get(timeout=120)]
    total = WRITERS * PUSHES_EACH
    assert sorted(versions) == list(range(1, total + 1))
    stored = registry.prompts.versions("shared")
    assert [v.version for v in stored] == list(range(1, total + 1))
    assert len({v.content_hash for v in stored}) == total
    assert registry.prompts.get("shared").version == total


@pytest.mark.parametrize("writers", [4])
def test_identical_concurrent_pushes_make_one_version(
    registry: Registry, registry_settings: RegistrySettings, writers: int
) -> None:
    ctx = mp.get_context("spawn")
    start = ctx.Manager().Event()
    with ctx.Pool(writers) as pool:
        pending = [
            pool.apply_async(_same_push, (registry_settings.model_dump_json(), start))
            for _ in range(writers)
        ]
        start.set()
        versions = [p.get(timeout=120) for p in pending]
    assert versions == [1] * writers
    assert len(registry.prompts.versions("same")) == 1


def _same_push(settings_json: str, start: mp.synchronize.Event) -> int:  # type: ignore[name-defined]
    reg = Registry(RegistrySettings.model_validate_json(settings_json))
    start.wait()
    try:
        return reg.prompts.push("same", "identical {{ q }}")[0].version
    finally:
        reg.close()
