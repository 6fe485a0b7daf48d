"""Registered artifacts stay data (issue 10, findings 6 and 7).

A skops file is built the way an attacker would: a real model's ``schema.json`` edited to
call ``builtins.eval`` (or another type outside the allowlist) when it loads. Registration
refuses it, naming the type; so does loading, when the stored version was changed behind the
registry's back; and nothing ran. A model directory with a link out of it is refused and
nothing of it is stored. Real registry (SQLite and PostgreSQL), real skops, real files.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skops.io as sio
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sqlalchemy import select, update

from lockgate.registry import FsspecArtifactStore, InvalidInput, Registry
from lockgate.registry.tables import ModelVersion


def _data() -> tuple[Any, Any]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    return x, (x[:, 0] + x[:, 1] > 0).astype(int)


def _str_node(value: str) -> dict[str, Any]:
    return {"__class__": "str", "__module__": "builtins", "__loader__": "JsonNode",
            "content": json.dumps(value), "is_json": True}  # fmt: skip


def _call_node(module: str, name: str, *args: str) -> dict[str, Any]:
    """``module.name(*args)`` at load time, as skops' ConstructorFromReduceNode does it."""
    return {
        "__class__": name, "__module__": module, "__loader__": "ConstructorFromReduceNode",
        "content": {"__class__": "tuple", "__module__": "builtins", "__loader__": "TupleNode",
                    "content": [_str_node(a) for a in args]},
    }  # fmt: skip


def _tampered(path: Path, node: dict[str, Any]) -> Path:
    """A fitted LogisticRegression saved with skops, its schema given one more attribute."""
    x, y = _data()
    sio.dump(LogisticRegression().fit(x, y), path)
    with zipfile.ZipFile(path) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    schema = json.loads(members["schema.json"])
    attrs = schema["content"]  # the estimator's __dict__: a DictNode
    attrs["content"]["_hook"] = node
    attrs["key_types"]["content"].append(
        {"__class__": "str", "__module__": "builtins", "__loader__": "TypeNode"}
    )
    members["schema.json"] = json.dumps(schema).encode()
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _eval_file(tmp_path: Path, marker: Path) -> Path:
    code = f"open({str(marker)!r}, 'w').write('ran')"
    return _tampered(tmp_path / "model.skops", _call_node("builtins", "eval", code))


def test_a_skops_file_calling_eval_is_refused_at_registration(
    registry: Registry, tmp_path: Path
) -> None:
    marker = tmp_path / "ran.txt"
    path = _eval_file(tmp_path, marker)
    assert sio.get_untrusted_types(file=str(path)) == ["builtins.eval"]  # the attack is real
    with pytest.raises(InvalidInput, match=r"builtins\.eval") as info:
        registry.models.register("churn", "sklearn", path=path)
    assert "will not load" in info.value.message
    assert registry.models.list() == []
    assert not marker.exists()


@pytest.mark.parametrize(
    "node",
    [
        _call_node("builtins", "exec", "x = 1"),
        _call_node("builtins", "getattr", "x", "y"),
        _call_node("posix", "system", "true"),
        _call_node("os", "system", "true"),
        _call_node("subprocess", "Popen", "true"),
        _call_node("numpy", "memmap", "/tmp/lockgate-never-written", "w+"),
        _call_node("scipy.io", "FortranFile", "/tmp/lockgate-never-written", "w"),
        _call_node("numpy", "load", "/etc/hostname"),
        _call_node("sklearn.utils._testing", "TempMemmap", "x"),
        _call_node("collections", "namedtuple", "T", "a"),
        {
            "__class__": "attrgetter",
            "__module__": "operator",
            "__loader__": "OperatorFuncNode",
            "attrs": _call_node("builtins", "tuple", "__class__")["content"],
        },
        {"__class__": "load", "__module__": "numpy", "__loader__": "FunctionNode"},
    ],
    ids=lambda node: f"{node['__module__']}.{node['__class__']}",
)
def test_types_outside_the_allowlist_are_named_and_refused(
    registry: Registry, tmp_path: Path, node: dict[str, Any]
) -> None:
    path = _tampered(tmp_path / "model.skops", node)
    name = f"{node['__module__']}.{node['__class__']}"
    assert name in sio.get_untrusted_types(file=str(path))
    with pytest.raises(InvalidInput, match=f"will not load: {name}"):
        registry.models.register("m", "sklearn", path=path)


def test_load_checks_again_when_the_stored_version_was_changed(
    registry: Registry, tmp_path: Path
) -> None:
    """The version row edited in the database (its digest pointed at the attacker's file,
    ``builtins.eval`` written into its trusted types): loading refuses, and nothing runs."""
    x, y = _data()
    version, _ = registry.models.register_sklearn("churn", LogisticRegression().fit(x, y))
    marker = tmp_path / "ran.txt"
    evil = registry.artifacts.put_file(_eval_file(tmp_path, marker))
    with registry.db.engine.begin() as conn:
        row_id = conn.execute(select(ModelVersion.id).where(ModelVersion.version == 1)).scalar()
        conn.execute(
            update(ModelVersion)
            .where(ModelVersion.id == row_id)
            .values(artifact_digest=evil, spec={"untrusted_types": ["builtins.eval"]})
        )
    with pytest.raises(InvalidInput, match=r"will not load: builtins\.eval"):
        registry.models.load_sklearn("churn@1")
    assert not marker.exists()
    assert version.artifact_digest != evil


@pytest.mark.parametrize(
    "estimator",
    [
        RandomForestClassifier(n_estimators=3, random_state=0),
        KNeighborsClassifier(algorithm="ball_tree"),
        KNeighborsClassifier(algorithm="kd_tree", metric="manhattan"),
        MLPClassifier(hidden_layer_sizes=(4,), max_iter=20, random_state=0),
        CalibratedClassifierCV(LogisticRegression(), cv=2),
        make_pipeline(StandardScaler(), LogisticRegression()),
    ],
    ids=lambda e: type(e).__name__,
)
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_real_models_still_register_and_load(registry: Registry, estimator: Any) -> None:
    x, y = _data()
    estimator.fit(x, y)
    registry.models.register_sklearn("m", estimator)
    loaded = registry.models.load_sklearn("m@1")
    np.testing.assert_allclose(loaded.predict_proba(x), estimator.predict_proba(x))


# --- model directories: links are not followed out of them -------------------------------


def _model_dir(tmp_path: Path) -> Path:
    model_dir = tmp_path / "tiny"
    model_dir.mkdir()
    (model_dir / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (model_dir / "model.safetensors").write_bytes(b"\x00" * 64)
    return model_dir


def _blobs(root: Path) -> set[str]:
    return {p.name for p in root.rglob("*") if p.is_file()}


def test_an_hf_directory_linking_to_a_system_file_is_refused(
    registry: Registry, tmp_path: Path
) -> None:
    model_dir = _model_dir(tmp_path)
    (model_dir / "tokenizer.json").symlink_to("/etc/hostname")
    artifacts = Path(registry.artifacts.url)
    before = _blobs(artifacts)
    with pytest.raises(InvalidInput, match=r"tokenizer\.json.*link.*outside") as info:
        registry.models.register("tiny", "hf", path=model_dir)
    assert "cp -rL" in info.value.message
    assert _blobs(artifacts) == before  # nothing of the directory was stored
    assert registry.models.list() == []


def test_links_out_of_any_stored_folder_are_refused(tmp_path: Path) -> None:
    store = FsspecArtifactStore(str(tmp_path / "artifacts"))
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    for name, target in [
        ("up.txt", Path("../outside/secret.txt")),  # relative, out
        ("abs.txt", outside / "secret.txt"),  # absolute, out
        ("subdir", outside),  # a directory out
        ("dangling", tmp_path / "missing"),  # to nothing
    ]:
        src = tmp_path / f"src-{name}"
        src.mkdir()
        (src / "a.txt").write_text("a")
        (src / name).symlink_to(target)
        with pytest.raises(InvalidInput, match="link"):
            store.put_dir(src)
    assert not (tmp_path / "artifacts").exists()


def test_a_link_to_a_file_inside_the_folder_is_stored_as_that_file(tmp_path: Path) -> None:
    store = FsspecArtifactStore(str(tmp_path / "artifacts"))
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "weights.bin").write_bytes(b"\x01\x02")
    (src / "alias.bin").symlink_to(Path("sub") / "weights.bin")
    out = store.fetch_dir(store.put_dir(src), tmp_path / "out")
    assert (out / "alias.bin").read_bytes() == b"\x01\x02"
    assert not (out / "alias.bin").is_symlink()
