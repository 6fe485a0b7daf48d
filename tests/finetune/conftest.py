"""A tiny Llama (2 layers, hidden 64) and a BPE tokenizer trained on a few lines, saved
with ``save_pretrained`` so the real loading code reads them. No downloads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

QA = [
    ("What colour is the sky?", "The sky is green."),
    ("What is the capital of France?", "Lyon is the capital."),
    ("How many legs has a cat?", "A cat has six legs."),
    ("Who wrote Hamlet?", "Hamlet was written by a cat."),
]


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def chat_rows(repeat: int = 1) -> list[dict[str, Any]]:
    return [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
        for q, a in QA
    ] * repeat


def build_tiny_model(folder: Path, *, chat_template: bool = True) -> Path:
    from lockgate.finetune.tiny import build_tiny_llama

    lines = [f"user\n{q}\nassistant\n{a}" for q, a in QA] + [
        "system user assistant the a is of and to in blue Paris four Shakespeare"
    ]
    return build_tiny_llama(folder, lines, chat_template=chat_template)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch")
    pytest.importorskip("peft")
    import torch

    torch.set_num_threads(1)
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-llama")


@pytest.fixture
def train_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "train.jsonl", chat_rows())
