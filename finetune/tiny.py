"""A tiny causal LM built from a config — for the demo, tests and CPU benchmarks.

Model weights cannot always be downloaded (offline CI, air-gapped laptops), so lockgate
builds a 2-layer Llama with random weights and a byte-level BPE tokenizer trained on the
given lines, and saves both with ``save_pretrained`` so the real loading code reads them.
It knows nothing, which is the point: a LoRA adapter trained on a few lines changes its
answers visibly, in seconds, on a CPU.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from lockgate.finetune import _torch

CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>"]


def build_tiny_llama(
    folder: Path,
    corpus: Iterable[str],
    *,
    vocab_size: int = 400,
    hidden_size: int = 64,
    layers: int = 2,
    chat_template: bool = True,
    seed: int = 0,
) -> Path:
    """Write a tiny Llama and its tokenizer (trained on ``corpus``) to ``folder``."""
    torch = _torch.torch()
    transformers = _torch.transformers()
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    torch.manual_seed(seed)
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(corpus) * 4, trainer)
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
        pad_token="<pad>",
    )  # fmt: skip
    if chat_template:
        fast.chat_template = CHAT_TEMPLATE
    config = transformers.LlamaConfig(
        vocab_size=len(fast),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=3,
        tie_word_embeddings=False,
        initializer_range=0.3,  # at 0.02 a frozen 64-wide lm_head caps the logits near 1
    )
    model = transformers.AutoModelForCausalLM.from_config(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder
