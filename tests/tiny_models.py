"""Tiny, seed-fixed random Hugging Face models (and a tiny tokenizer) for reference tests.

``build_tiny_model(family, directory)`` makes a tiny model (hidden 48-64, 3 layers; 6 for Gemma 3)
of one family (llama, mistral, qwen2, qwen3, phi3, gemma2, gemma3_text) with transformers on
PyTorch (float32), re-initialises every parameter with a fixed seed at a scale that gives peaked,
position-dependent predictions (transformers' own init, std 0.02, makes every lens distribution
nearly uniform and a comparison of them nearly vacuous), and saves it with ``save_pretrained``
(safetensors, transformers 5's config layout: rope theta under ``rope_parameters``) together with a
byte-level BPE tokenizer, so ``ModelAnalyzer.load(str(directory))`` can load the same weights with
mlx-lm.

Nothing here touches the network; torch and transformers are imported lazily.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

SPECIAL_TOKENS = ["<s>", "</s>", "<pad>"]
# Words whose byte-level spellings get merges, so prompts tokenize into multi-byte tokens too.
MERGE_WORDS = [
    " the", " The", "The", " capital", " of", " France", " is", " Paris", " def", " return",
    " print", " hello", " world", " and", " in", " to", " a", "ing", "ion", " 12", " x",
]  # fmt: skip
TINY_VOCAB_SIZE = 352  # the models' vocabulary (the tokenizer's is smaller: the rest are padded rows)


# --------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------


def _torch() -> Any:
    """torch (the test extra's reference implementation); the calling test skips without it."""
    import pytest

    return pytest.importorskip("torch", reason="torch is in the test extra")


def byte_level_vocab() -> tuple[list[str], list[tuple[str, str]]]:
    """(tokens by id, merges) of a tiny GPT-2 style byte-level BPE.

    Ids: the special tokens, the 256 byte characters, then one token per merge. Deterministic.
    """
    from tokenizers import pre_tokenizers

    tokens = list(SPECIAL_TOKENS) + sorted(pre_tokenizers.ByteLevel.alphabet())
    known = set(tokens)
    merges: list[tuple[str, str]] = []
    table = _byte_table()
    for word in MERGE_WORDS:
        spelled = "".join(table[b] for b in word.encode("utf-8"))
        left = spelled[0]
        for ch in spelled[1:]:
            merged = left + ch
            if merged not in known:
                merges.append((left, ch))
                tokens.append(merged)
                known.add(merged)
            left = merged
    return tokens, merges


def _byte_table() -> dict[int, str]:
    printable = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    table = {b: chr(b) for b in printable}
    n = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + n)
            n += 1
    return table


def tiny_tokenizer() -> Any:
    """A ``tokenizers.Tokenizer``: byte-level BPE over :func:`byte_level_vocab` (any text encodes)."""
    from tokenizers import AddedToken, Tokenizer, decoders, pre_tokenizers
    from tokenizers.models import BPE

    tokens, merges = byte_level_vocab()
    tk = Tokenizer(BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges, fuse_unk=False))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tk.decoder = decoders.ByteLevel()
    tk.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    return tk


def save_tiny_tokenizer(directory: str | Path, chat_template: str | None = None) -> int:
    """Save the tiny tokenizer as tokenizer.json + tokenizer_config.json; returns its vocabulary size."""
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(
        tokenizer_object=tiny_tokenizer(), bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    if chat_template:
        tok.chat_template = chat_template
    tok.save_pretrained(str(directory))
    return len(tok)


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------

# Non-default rope thetas on purpose: a loader that reads the wrong key (mlx-lm's default 10000)
# changes every position after the first.
_COMMON = dict(
    vocab_size=TINY_VOCAB_SIZE,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
    rms_norm_eps=1e-6,
    bos_token_id=0,
    eos_token_id=1,
    pad_token_id=2,
)

FAMILY_CONFIGS: dict[str, dict[str, Any]] = {
    "llama": dict(_COMMON, rope_parameters={"rope_type": "default", "rope_theta": 500.0}),
    "mistral": dict(
        _COMMON, head_dim=16, sliding_window=None, rope_parameters={"rope_type": "default", "rope_theta": 700.0}
    ),
    "qwen2": dict(_COMMON, tie_word_embeddings=True, rope_parameters={"rope_type": "default", "rope_theta": 300.0}),
    "qwen3": dict(_COMMON, head_dim=16, rope_parameters={"rope_type": "default", "rope_theta": 400.0}),
    "phi3": dict(_COMMON, rope_parameters={"rope_type": "default", "rope_theta": 600.0}),
    # Gemma 2: both layer types (sliding/full), attention and final logit softcapping, with caps
    # small enough that they change the numbers. The window is wider than the test prompts: mlx-lm's
    # gemma2 has no sliding-window mask (the analysis refuses longer prompts, see the tests).
    "gemma2": dict(
        _COMMON,
        head_dim=16,
        query_pre_attn_scalar=16,
        sliding_window=64,
        attn_logit_softcapping=8.0,
        final_logit_softcapping=6.0,
        rope_parameters={"rope_type": "default", "rope_theta": 800.0},
    ),
    # Gemma 3: hidden 48 on purpose: sqrt(48) = 6.9282 is not a bfloat16 number (mlx-lm rounds the
    # embedding scale to bfloat16, 6.9375; transformers in float32 does not). Six layers: mlx-lm
    # reads the layout as "every 6th layer is global" (sliding_window_pattern, default 6), which is
    # transformers' default layer_types too; a window shorter than the prompts tests both masks.
    "gemma3_text": dict(
        _COMMON,
        hidden_size=48,
        num_hidden_layers=6,
        head_dim=16,
        query_pre_attn_scalar=16,
        sliding_window=5,
    ),
}

_CONFIG_CLASSES = {
    "llama": "LlamaConfig",
    "mistral": "MistralConfig",
    "qwen2": "Qwen2Config",
    "qwen3": "Qwen3Config",
    "phi3": "Phi3Config",
    "gemma2": "Gemma2Config",
    "gemma3_text": "Gemma3TextConfig",
}


def tiny_config(family: str, **overrides: Any) -> Any:
    import transformers

    kwargs = dict(FAMILY_CONFIGS[family])
    kwargs.update(overrides)
    return getattr(transformers, _CONFIG_CLASSES[family])(**kwargs)


def randomize_(model: Any, seed: int) -> None:
    """Re-initialise every parameter (seed-fixed) at scales that give peaked distributions.

    Linear weights ~ N(0, 1/fan_in) (activations keep their size), norm weights ~ 1 + N(0, 0.1^2)
    (Gemma norms, stored as ``w`` in ``1 + w``: N(0, 0.1^2)), biases ~ N(0, 0.1^2). The head is
    ~ N(0, 9/hidden) so the lens logits have a spread of about 3 units: top-1 probabilities from a
    few percent to near one, varying with layer and position. Untied input embeddings ~ N(0, 1).
    """
    torch = _torch()

    gen = torch.Generator().manual_seed(seed)
    gemma_norms = "gemma" in type(model).__name__.lower()
    tied = model.get_output_embeddings().weight is model.get_input_embeddings().weight
    hidden = model.config.hidden_size
    with torch.no_grad():
        for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            noise = torch.randn(p.shape, generator=gen)
            if "norm" in name:
                p.copy_((0.0 if gemma_norms else 1.0) + 0.1 * noise)
            elif name.endswith("bias"):
                p.copy_(0.1 * noise)
            elif "lm_head" in name or ("embed_tokens" in name and tied):
                p.copy_(3.0 * noise / math.sqrt(hidden))
            elif "embed_tokens" in name:
                p.copy_(noise)
            else:
                p.copy_(noise / math.sqrt(p.shape[-1]))


def build_tiny_model(family: str, directory: str | Path, *, seed: int = 0, save: bool = True, **overrides: Any) -> Any:
    """A tiny random float32 model of ``family``, saved (with the tiny tokenizer) to ``directory``.

    Returns the PyTorch model in eval mode (eager attention: the plain reference implementation).
    """
    torch = _torch()
    import transformers

    config = tiny_config(family, **overrides)
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    randomize_(model, seed)
    if getattr(config, "tie_word_embeddings", False):
        model.tie_weights()
    model.eval()
    if save:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(str(directory))
        n = save_tiny_tokenizer(directory)
        assert n <= config.vocab_size, (n, config.vocab_size)
    return model


# --------------------------------------------------------------------------------------------
# The reference lens (PyTorch)
# --------------------------------------------------------------------------------------------


def hf_block_outputs(model: Any, ids: list[int]) -> tuple[list[Any], Any]:
    """(raw output of every decoder block ``[T, H]`` (float32 torch), the model's own logits ``[T, V]``).

    Captured with forward hooks on the blocks, so no assumption about ``hidden_states`` indexing
    is needed (tests check that separately).
    """
    torch = _torch()

    layers = model.model.layers
    captured: dict[int, Any] = {}

    def hook(index: int):
        def fn(module: Any, args: Any, output: Any) -> None:
            captured[index] = (output[0] if isinstance(output, tuple) else output).detach()

        return fn

    handles = [layer.register_forward_hook(hook(i)) for i, layer in enumerate(layers)]
    try:
        with torch.no_grad():
            out = model(torch.tensor([list(ids)]), use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return [captured[i][0].float() for i in range(len(layers))], out.logits[0].float()


def hf_lens_log_probs(model: Any, hidden: Any) -> Any:
    """The reference lens: the model's own final norm -> lm_head -> softcap -> float32 log-softmax."""
    torch = _torch()

    with torch.no_grad():
        logits = model.lm_head(model.model.norm(hidden)).float()
        cap = getattr(model.config, "final_logit_softcapping", None)
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return torch.log_softmax(logits, dim=-1)
