"""Model shapes for the benchmarks: configs with random weights, and a tokenizer built here.

Nothing is downloaded (CI and the GPU machine reach no hub). ``qwen2-0.5b`` is Qwen2-0.5B's
shape (24 layers, hidden 896, vocabulary 151,936, tied embeddings) with random weights;
``tiny`` is a 4-layer Llama for CPU runs. :func:`write_model_dir` saves a shape and a
byte-level BPE tokenizer whose vocabulary is exactly the model's, so every id a random model
generates decodes to text, with ``save_pretrained`` so lockgate's real loading code reads
them. The saved model has no end-of-sequence id: generation always runs to ``max_tokens``,
which is what a serving benchmark wants.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

SHAPES: dict[str, dict[str, Any]] = {
    "tiny": {"model_type": "llama", "vocab_size": 2048, "hidden_size": 128,
             "intermediate_size": 344, "num_hidden_layers": 4, "num_attention_heads": 4,
             "num_key_value_heads": 2, "max_position_embeddings": 1024},
    "qwen2-0.5b": {"model_type": "qwen2", "vocab_size": 151936, "hidden_size": 896,
                   "intermediate_size": 4864, "num_hidden_layers": 24,
                   "num_attention_heads": 14, "num_key_value_heads": 2,
                   "max_position_embeddings": 4096, "tie_word_embeddings": True},
}  # fmt: skip

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>"]  # ids 0..3
WORDS = [
    "the",
    "a",
    "is",
    "of",
    "and",
    "to",
    "in",
    "on",
    "for",
    "with",
    "what",
    "how",
    "many",
    "who",
    "which",
    "where",
    "when",
    "why",
    "colour",
    "sky",
    "capital",
    "city",
    "river",
    "cat",
    "dog",
    "legs",
    "book",
    "wrote",
    "written",
    "answer",
    "question",
    "model",
    "adapter",
    "train",
    "green",
    "blue",
    "red",
    "paris",
    "lyon",
    "london",
    "four",
    "six",
    "seven",
    "eight",
    "one",
    "two",
    "three",
    "yes",
    "no",
    "please",
    "thanks",
]


def build_config(shape: str, **override: Any) -> Any:
    """A transformers config of ``shape`` (random weights come with ``from_config``)."""
    from transformers import AutoConfig

    return AutoConfig.for_model(**{**SHAPES[shape], **override})


def sentence(rng: random.Random, low: int, high: int) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(low, high))]
    return " ".join(words).capitalize() + rng.choice([".", "?", "!"])


def chat_rows(n: int, *, seed: int = 0, answer_words: tuple[int, int] = (8, 40)) -> list[Any]:
    """``n`` synthetic chat examples (OpenAI format), question and answer of varied length."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        messages = [
            {"role": "system", "content": "You answer briefly."},
            {"role": "user", "content": sentence(rng, 4, 16)},
            {"role": "assistant", "content": sentence(rng, *answer_words)},
        ]
        rows.append({"messages": messages})
    return rows


def build_tokenizer(vocab_size: int, corpus: list[str]) -> Any:
    """A byte-level BPE trained on ``corpus``, then filled up to exactly ``vocab_size`` ids
    with word-like tokens (decodable, never produced by encoding)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from lockgate.finetune.tiny import CHAT_TEMPLATE

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=min(vocab_size, 1024), special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )  # fmt: skip
    tok.train_from_iterator(corpus * 4, trainer)
    data = json.loads(tok.to_str())
    vocab: dict[str, int] = data["model"]["vocab"]
    letters, i = "abcdefghijklmnopqrstuvwxyz", 0
    while len(vocab) < vocab_size:
        n, word = i, ""
        while True:
            word, n = letters[n % 26] + word, n // 26
            if n == 0:
                break
        i += 1
        token = "\u0120q" + word  # "Ġ" is a space in the byte-level alphabet
        if token not in vocab:
            vocab[token] = len(vocab)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(json.dumps(data)), bos_token="<s>",
        eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
    )  # fmt: skip
    fast.chat_template = CHAT_TEMPLATE
    assert len(fast) == vocab_size, (len(fast), vocab_size)
    return fast


def write_model_dir(shape: str, folder: Path, *, device: str = "cpu", seed: int = 0) -> Path:
    """Save ``shape`` with random weights (bf16 on CUDA, else fp32) and its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM

    vocab = SHAPES[shape]["vocab_size"]
    corpus = [m["content"] for row in chat_rows(200, seed=seed + 1) for m in row["messages"]]
    tokenizer = build_tokenizer(vocab, [*corpus, " ".join(WORDS)])
    config = build_config(shape, bos_token_id=1, eos_token_id=None, pad_token_id=3)
    torch.manual_seed(seed)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    with torch.device(device):  # initialising 0.5B weights is much faster on the GPU
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    del model
    return folder
