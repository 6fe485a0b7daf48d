"""Models of every flavor through one API (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from lockgate.registry import InvalidInput, NotFound, Registry


def test_upstream_versions_and_labels(registry: Registry) -> None:
    v1, _ = registry.models.register(
        "chat", "upstream", {"model": "openai/gpt-4o-mini", "params": {"temperature": 0}}
    )
    v2, _ = registry.models.register("chat", "upstream", {"model": "anthropic/claude-3-5-haiku"})
    again, created = registry.models.register(
        "chat", "upstream", {"model": "openai/gpt-4o-mini", "params": {"temperature": 0}}
    )
    assert (v1.version, v2.version, again.version, created) == (1, 2, 1, False)
    registry.labels.set("model", "chat", "production", 1)
    prod = registry.models.get("chat@production")
    assert prod.spec["model"] == "openai/gpt-4o-mini" and "production" in prod.labels
    assert registry.models.get("chat").version == 2  # latest
    assert [m.name for m in registry.models.list()] == ["chat"]


def test_sklearn_model_round_trips_through_skops(registry: Registry) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    est = LogisticRegression().fit(x, y)
    version, _ = registry.models.register_sklearn("churn", est, spec={"task": "classification"})
    assert version.flavor == "sklearn" and version.artifact_digest.startswith("sha256:")
    loaded = registry.models.load_sklearn("churn@1")
    np.testing.assert_allclose(loaded.predict_proba(x), est.predict_proba(x))


def test_pickle_is_refused(registry: Registry, tmp_path: Path) -> None:
    path = tmp_path / "model.pkl"
    path.write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(InvalidInput, match="never pickle"):
        registry.models.register("m", "sklearn", path=path)


def test_hf_and_lora_directories(registry: Registry, tmp_path: Path) -> None:
    model_dir = tmp_path / "tiny"
    model_dir.mkdir()
    (model_dir / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (model_dir / "model.safetensors").write_bytes(b"\x00" * 128)
    hf, _ = registry.models.register("tiny", "hf", path=model_dir)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 8}))
    lora, _ = registry.models.register(
        "tiny-qa", "lora", {"base_model": "registry:tiny@1"}, path=adapter
    )
    out = registry.models.fetch("tiny-qa@1", tmp_path / "out")
    assert json.loads((out / "adapter_config.json").read_text()) == {"r": 8}
    assert hf.artifact_digest != lora.artifact_digest


def test_flavor_errors_are_clear(registry: Registry, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="unknown flavor 'onnx'"):
        registry.models.register("m", "onnx")
    with pytest.raises(InvalidInput, match="needs model in its spec"):
        registry.models.register("m", "upstream", {})
    with pytest.raises(InvalidInput, match="needs base_model"):
        registry.models.register("m", "lora", {}, path=tmp_path)
    with pytest.raises(InvalidInput, match=r"no adapter_config\.json"):
        registry.models.register("m", "lora", {"base_model": "x"}, path=tmp_path)
    with pytest.raises(NotFound):
        registry.models.get("m")
