"""Examples → token ids and labels, with loss only on what the model should learn.

Chat rows are rendered with the tokenizer's chat template when it has one. The trained
span of each assistant message (weight 1) is found by rendering the conversation up to it
with ``add_generation_prompt=True`` (the prefix) and up to and including it: the characters
in between are the assistant's turn, end-of-turn tokens included. Tokens whose characters
fall in a trained span keep their id as label; every other token gets -100.

Without a chat template, a simple fallback format is used (documented in docs/finetune.md)::

    <bos>### System:\n{content}\n\n### User:\n{content}\n\n### Assistant:\n{content}<eos>\n\n

Completion rows are ``<bos>{prompt}{completion}<eos>`` with loss on ``{completion}<eos>``.
Sequences longer than ``max_length`` are truncated; one left without a trained token is
dropped (and counted).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lockgate.finetune.data import Example


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    labels: list[int]

    @property
    def trained_tokens(self) -> int:
        return sum(1 for label in self.labels if label != -100)


Span = tuple[int, int]


def _fallback_chat(tokenizer: Any, messages: list[dict[str, Any]]) -> tuple[str, list[Span]]:
    text = tokenizer.bos_token or ""
    spans: list[Span] = []
    eos = tokenizer.eos_token or ""
    for msg in messages:
        text += f"### {msg['role'].capitalize()}:\n"
        start = len(text)
        text += msg["content"] + (eos if msg["role"] == "assistant" else "")
        if msg["role"] == "assistant" and msg.get("weight", 1) == 1:
            spans.append((start, len(text)))
        text += "\n\n"
    return text, spans


def _template_chat(tokenizer: Any, messages: list[dict[str, Any]]) -> tuple[str, list[Span]]:
    plain = [{"role": m["role"], "content": m["content"]} for m in messages]

    def render(upto: int, prompt: bool) -> str:
        if upto == 0:
            return ""
        out = tokenizer.apply_chat_template(
            plain[:upto], tokenize=False, add_generation_prompt=prompt
        )
        return str(out)

    full = render(len(plain), False)
    spans: list[Span] = []
    for i, msg in enumerate(messages):
        if msg["role"] != "assistant" or msg.get("weight", 1) != 1:
            continue
        prefix, upto = render(i, True), render(i + 1, False)
        if full.startswith(upto) and upto.startswith(prefix):
            spans.append((len(prefix), len(upto)))
        else:  # a template that rewrites earlier turns: find the content itself
            start = full.find(msg["content"], len(prefix) if full.startswith(prefix) else 0)
            if start >= 0:
                spans.append((start, start + len(msg["content"])))
    return full, spans


def render_example(tokenizer: Any, example: Example) -> tuple[str, list[Span]]:
    """The text to tokenize and the character spans that carry the loss."""
    if example.messages is not None:
        if getattr(tokenizer, "chat_template", None):
            return _template_chat(tokenizer, example.messages)
        return _fallback_chat(tokenizer, example.messages)
    prompt = (tokenizer.bos_token or "") + (example.prompt or "")
    text = prompt + (example.completion or "") + (tokenizer.eos_token or "")
    return text, [(len(prompt), len(text))]


def encode_example(tokenizer: Any, example: Example, max_length: int) -> Encoded | None:
    text, spans = render_example(tokenizer, example)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = list(enc["input_ids"])[:max_length]
    labels: list[int] = []
    for token_id, (start, end) in zip(ids, enc["offset_mapping"], strict=False):
        inside = any(s <= start and end <= e and end > start for s, e in spans)
        labels.append(token_id if inside else -100)
    if labels:
        labels[0] = -100  # nothing predicts a sequence's first token (matters when packed)
    encoded = Encoded(ids, labels)
    return encoded if encoded.trained_tokens else None


def encode_all(
    tokenizer: Any, examples: list[Example], max_length: int
) -> tuple[list[Encoded], int]:
    """Encode every example; returns the encoded ones and how many were dropped."""
    out = [encode_example(tokenizer, ex, max_length) for ex in examples]
    kept = [e for e in out if e is not None]
    return kept, len(out) - len(kept)
