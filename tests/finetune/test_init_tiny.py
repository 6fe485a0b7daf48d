"""`lockgate model init-tiny`: a base model for a first fine-tune, with no download."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lockgate.registry import Registry
from tests.conftest import Cli

pytest.importorskip("transformers")


def test_init_tiny_registers_a_loadable_base_once(
    cli: Cli, registry: Registry, tmp_path: Path
) -> None:
    code, out, err = cli("model", "init-tiny", "tiny-llama", "--label", "production", "--json")
    assert code == 0, err
    made = json.loads(out)
    assert made == {"name": "tiny-llama", "version": 1, "created": True, "label": "production",
                    "model": "registry:tiny-llama@production"}  # fmt: skip
    info = registry.models.get("tiny-llama@production")
    assert info.flavor == "hf" and info.version == 1

    # the same build again is the same content: nothing new is registered
    code, out, _ = cli("model", "init-tiny", "tiny-llama", "--json")
    assert code == 0 and json.loads(out)["created"] is False

    # it loads through the real loading code and chats
    from lockgate.finetune.inference import generate, load_base

    base = load_base(str(registry.models.fetch("tiny-llama@1", tmp_path / "m")))
    text = generate(base, [{"role": "user", "content": "What is the capital of France?"}],
                    max_new_tokens=4)  # fmt: skip
    assert isinstance(text, str)


def test_init_tiny_names_a_bad_corpus(cli: Cli, tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    code, _, err = cli("model", "init-tiny", "t", "--corpus", str(empty))
    assert code == 2 and "--corpus" in err and "no text" in err
    code, _, err = cli("model", "init-tiny", "t", "--corpus", str(tmp_path / "missing.txt"))
    assert code == 2 and "cannot read" in err
