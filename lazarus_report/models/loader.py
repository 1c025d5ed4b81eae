"""Load a model for the lens from whatever ``-m`` names, and describe what was loaded.

Precision: on the CPU, quantized weights are dequantized to float32 and every parameter runs in
float32 through BLAS (MLX's quantized CPU kernels are ~25x slower than an optimized sgemm).
On Metal/CUDA the weights stay as stored. When the float32 weights would not fit the memory budget
(``max_memory``, or under ``precision="auto"`` the machine's available memory), the weights stay as
stored and each block is dequantized to float32 just before it runs (``streamed``).
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.errors import LazarusError, LazarusWarning
from ..core.runtime import import_mlx, preload_blas
from ..results.provenance import ModelInfo
from . import distributed, mlx_lm_light, streamed
from .families import LensParts, get_family
from .quantize import dequantize_affine
from .resolve import ResolvedModel, resolve_model

if TYPE_CHECKING:
    from .tokenizer import Tokenizer
mx = import_mlx()
from mlx import nn  # noqa: E402
from mlx.utils import tree_flatten  # noqa: E402

PRECISIONS = ("auto", "float32", "native")


@dataclass
class LoadedModel:
    """A model ready for the lens: mlx-lm module, its lens parts, tokenizer and description."""

    model: Any
    parts: LensParts
    tokenizer: Tokenizer
    info: ModelInfo
    config: dict[str, Any]
    context_length: int | None
    load_seconds: float
    # A sliding attention window the model was trained with but mlx-lm's implementation of the
    # family does not apply: prompts longer than this would silently give wrong numbers.
    unsupported_window: int | None = None
    # How the weights run: "float32" (dequantized at load), "streamed" (kept as stored, each block
    # dequantized to float32 as it runs) or "native" (as stored, e.g. quantized kernels on a GPU).
    execution: str = "float32"


def _unsupported_sliding_window(config: dict[str, Any]) -> int | None:
    window = config.get("sliding_window")
    if not window:
        return None
    model_type = config.get("model_type")
    if model_type == "gemma2":  # mlx-lm's gemma2 applies no sliding mask at all
        return int(window)
    if model_type in ("llama", "mistral") and not config.get("layer_types"):
        return int(window)  # mlx-lm's llama slides only layers that layer_types marks as sliding
    if model_type == "qwen2" and config.get("use_sliding_window"):
        return int(window)  # transformers slides layers >= max_window_layers; mlx-lm's qwen2 never does
    return None


def device_kind() -> str:
    return "gpu" if mx.default_device().type == mx.DeviceType.gpu else "cpu"


def _want_float32(precision: str) -> bool:
    if precision not in PRECISIONS:
        raise LazarusError(f"unknown precision {precision!r} (choose from {', '.join(PRECISIONS)})")
    if precision == "auto":
        return device_kind() == "cpu"
    return precision == "float32"


def load_model(
    model_id: str,
    *,
    adapter: str | None = None,
    precision: str = "auto",
    max_memory: int | str | None = None,
) -> LoadedModel:
    """Resolve ``model_id`` (alias, GGUF path, model directory or hub ID) and load it.

    ``max_memory``: bytes (or a size such as "250MB") the model may use, weights and working memory;
    when its float32 weights do not fit, it runs streamed (see ``streamed``); when even the stored
    weights do not fit, ``LazarusError`` says how much is needed.
    """
    start = time.perf_counter()
    to_float32 = _want_float32(precision)
    budget = streamed.parse_size(max_memory) if max_memory is not None else None
    if adapter is not None:
        check_adapter_dir(adapter)  # fail before spending time on the model
        mlx_lm_light.prefetch_adapter_support()  # its imports overlap with loading the model
    resolved = resolve_model(model_id)
    if budget is not None and resolved.path is not None:
        streamed.check_fits_before_load(resolved, budget, to_float32, model_id)  # before reading any weight
    # Sharded over several ranks (mlx.launch): weights stay lazy until sharded, so each rank only
    # ever materializes its share.
    lazy = distributed.active()
    if lazy and budget is not None:
        raise LazarusError("--max-memory is not supported under mlx.launch yet: each rank holds its share in float32")
    plan = _Planner(to_float32, None if lazy else budget, precision, model_id, machine_budget=not lazy)
    if resolved.kind == "gguf":
        model, config, tokenizer, stored = _load_gguf(resolved, plan, lazy=lazy)
    else:
        model, config, tokenizer, stored = _load_directory(resolved, plan, lazy=lazy)
    if adapter is not None:
        _apply_adapter(model, config, adapter)
    if plan.execution == "streamed":
        streamed.stream_model(model, gguf_dequantization=resolved.kind == "gguf")
    shard = distributed.shard_model(model, config, adapter=adapter) if lazy else None
    model.eval()
    mx.eval(model.parameters())
    mx.clear_cache()  # hand the quantized originals and conversion temporaries back to the OS
    parts = LensParts.of(model, config["model_type"])
    if shard is not None:
        parts = dataclasses.replace(parts, layers=distributed.layers_here(parts.layers, shard), shard=shard)
    precision_text = _describe_precision(model, stored, plan.execution == "float32", plan.execution)
    info = ModelInfo(
        model_id=model_id,
        source=resolved.source,
        path=str(resolved.path) if resolved.path else None,
        family=config["model_type"],
        num_layers=len(parts.layers),
        hidden_size=int(parts.args.hidden_size),
        vocab_size=int(parts.args.vocab_size),
        tied_embeddings=parts.tied,
        embedding_scale=parts.default_embedding_scale,
        precision=precision_text,
        device=device_kind(),
        blas=preload_blas() if device_kind() == "cpu" else "n/a (GPU)",
        chat_template=tokenizer.chat_template is not None,
        adapter=str(adapter) if adapter else None,
        final_logit_softcap=parts.softcap,
        execution=plan.execution,
        distributed=shard.describe(weight_bytes(model)) if shard is not None else None,
    )
    context = config.get("max_position_embeddings")
    return LoadedModel(
        execution=plan.execution,
        unsupported_window=_unsupported_sliding_window(config),
        model=model,
        parts=parts,
        tokenizer=tokenizer,
        info=info,
        config=config,
        context_length=int(context) if context else None,
        load_seconds=time.perf_counter() - start,
    )


def weight_bytes(model: Any) -> int:
    """Bytes of the parameters this process holds (its share when sharded)."""
    params: list[tuple[str, Any]] = tree_flatten(model.parameters())  # type: ignore[assignment]
    return sum(int(v.nbytes) for _, v in params)


class _Planner:
    """Chooses the execution path once the weights' sizes are known (before any conversion)."""

    def __init__(
        self, to_float32: bool, budget: int | None, precision: str, model_id: str, machine_budget: bool = True
    ):
        self.to_float32 = to_float32
        self.budget = budget
        self.from_user = budget is not None
        # Without --max-memory the machine's available memory bounds the float32 copy (explicit float32 too:
        # streaming keeps float32 arithmetic, and an 8B model's 32 GB float32 copy would only be killed).
        if budget is None and precision in ("auto", "float32") and to_float32 and machine_budget:
            self.budget = streamed.available_memory()
        self.model_id = model_id
        self.execution = "float32" if to_float32 else "native"

    def surely_fits_float32(self, path: Any) -> bool:
        """Whether the machine's memory (not a user's budget) holds this file's weights in float32 whatever
        its types (no GGUF type is below 2 bits a weight: float32 is at most 16x the file), so the header
        need not be read (~20 ms on SmolLM2)."""
        if self.from_user or self.budget is None:
            return False
        return Path(path).stat().st_size * 16 + streamed.WORKING_BYTES <= self.budget

    def choose(self, sizes: streamed.WeightSizes) -> str:
        self.execution = streamed.plan_execution(self.to_float32, sizes, self.budget, self.from_user, self.model_id)
        if self.execution == "streamed" and not self.from_user and self.budget is not None:
            warnings.warn(
                f"{self.model_id}: its weights in float32 ({streamed.format_size(sizes.float32)}) do not fit the "
                f"memory available ({streamed.format_size(self.budget, 'down')}): running streamed (weights kept as "
                "stored, each block dequantized to float32 as it runs; same numbers, slower)",
                LazarusWarning,
                stacklevel=2,
            )
        return self.execution


def _describe_precision(model: Any, stored: str, to_float32: bool, execution: str = "") -> str:
    params: list[tuple[str, Any]] = tree_flatten(model.parameters())  # type: ignore[assignment]
    dtypes = sorted({str(v.dtype).replace("mlx.core.", "") for _, v in params})
    if execution == "streamed":
        return (
            f"float32, streamed: weights kept as stored ({stored or 'MLX affine'}), "
            "each block dequantized to float32 as it runs"
        )
    quantized = any(isinstance(m, (nn.QuantizedLinear, nn.QuantizedEmbedding)) for _, m in model.named_modules())
    floats = "/".join(d for d in dtypes if "int" not in d)
    if quantized:
        return f"quantized as stored ({stored or 'MLX affine'}), {floats} elsewhere"
    if to_float32 and stored not in ("F32", "float32"):
        return f"{floats} (dequantized from {stored})" if stored else floats
    return f"{floats} (as stored: {stored})" if stored else floats


def _load_gguf(
    resolved: ResolvedModel, plan: _Planner, lazy: bool = False
) -> tuple[Any, dict[str, Any], Tokenizer, str]:
    from .gguf import load_gguf
    from .gguf_metadata import MLX_NATIVE_TENSOR_TYPES, GGUFError, read_tensor_types
    from .tokenizer import tokenizer_from_gguf

    if plan.to_float32 and plan.budget is not None and not plan.surely_fits_float32(resolved.path):
        try:
            native = all(t in MLX_NATIVE_TENSOR_TYPES for t in read_tensor_types(resolved.path).values())
        except GGUFError:
            native = True  # load_gguf says what is wrong with the file
        # k-quants: MLX cannot hold them, so the float32 path converts the whole file; decide first
        if not native and plan.choose(streamed.sizes_from_gguf_header(resolved.path)) == "streamed":
            return _load_gguf_blocks(resolved)
    g = load_gguf(resolved.path)
    get_family(g.config["model_type"])  # unsupported families fail before building anything
    model = mlx_lm_light.build_model(g.config)
    weights = g.weights
    to_float32 = plan.choose(streamed.sizes_of_weights(weights)) == "float32"
    if to_float32:
        weights = _dequantize_weights(weights, evaluate=not lazy)
    else:
        _quantize_like(model, weights)
    weights = model.sanitize(weights) if hasattr(model, "sanitize") else weights
    try:
        model.load_weights(list(weights.items()), strict=True)
    except ValueError as exc:
        raise LazarusError(f"GGUF file {resolved.path} does not match its declared architecture: {exc}") from None
    if to_float32:
        model.set_dtype(mx.float32)
    tokenizer = tokenizer_from_gguf(resolved.path, metadata=g.metadata if g.metadata_complete else None)
    stored = g.file_type + (" via gguf dequantization" if g.dequantized_with_gguf else "")
    return model, g.config, tokenizer, stored


def _load_gguf_blocks(resolved: ResolvedModel) -> tuple[Any, dict[str, Any], Tokenizer, str]:
    """A k-quant GGUF for streamed execution: its matrices stay as GGUF blocks (``streamed.GGUFBlocksLinear``)."""
    from .gguf import GGUFBlocks, load_gguf_blocks
    from .tokenizer import tokenizer_from_gguf

    g = load_gguf_blocks(resolved.path)
    get_family(g.config["model_type"])
    model = mlx_lm_light.build_model(g.config)
    blocks = {k: v for k, v in g.weights.items() if isinstance(v, GGUFBlocks)}
    dense = {k: v for k, v in g.weights.items() if not isinstance(v, GGUFBlocks)}
    dense = model.sanitize(dense) if hasattr(model, "sanitize") else dense
    params: list[tuple[str, Any]] = tree_flatten(model.parameters())  # type: ignore[assignment]
    expected = {k for k, _ in params}
    given = set(dense) | set(blocks)
    if given != expected:
        detail = sorted(expected - given)[:1] or sorted(given - expected)[:1]
        raise LazarusError(f"GGUF file {resolved.path} does not match its declared architecture: {detail[0]}")
    model.load_weights(list(dense.items()), strict=False)
    streamed.attach_gguf_blocks(model, blocks)
    tokenizer = tokenizer_from_gguf(resolved.path)  # its cache, or the file's full metadata (g holds scalars only)
    return model, g.config, tokenizer, f"{g.file_type} as GGUF blocks"


def _group_bits(weight: Any, scales: Any) -> tuple[int, int]:
    group_size = 32  # every MLX-native GGUF quantization uses blocks of 32
    in_features = scales.shape[-1] * group_size
    bits = weight.shape[-1] * 32 // in_features
    return group_size, bits


def _dequantize_weights(weights: dict[str, Any], evaluate: bool = True) -> dict[str, Any]:
    """float32 copies of all weights, quantized triples dequantized (``evaluate=False``: lazily, for
    a model that is sharded before its weights are materialized).

    Two CPU streams take alternate tensors (MLX runs each stream's element-wise work on its own
    thread: ~25% faster on two cores), evaluated a pair at a time so only two tensors' temporaries
    are alive at once.
    """
    streams = [mx.default_stream(mx.cpu), _second_cpu_stream()]
    out: dict[str, Any] = {}
    pending: list[Any] = []
    names = [n for n in weights if not n.endswith((".scales", ".biases"))]
    for i, name in enumerate(names):
        w = weights[name]
        prefix = name[: -len(".weight")] if name.endswith(".weight") else None
        with mx.stream(streams[i % 2]):
            if prefix and f"{prefix}.scales" in weights:
                scales, biases = weights[f"{prefix}.scales"], weights[f"{prefix}.biases"]
                group_size, bits = _group_bits(w, scales)
                w = dequantize_affine(w, scales, biases, group_size, bits)
            out[name] = w.astype(mx.float32)
        pending.append(out[name])
        if evaluate and len(pending) == 2:
            mx.eval(*pending)
            pending = []
    if evaluate:
        mx.eval(*pending)
    return out


_streams: list[Any] = []


def _second_cpu_stream() -> Any:
    if not _streams:
        _streams.append(mx.new_stream(mx.cpu))
    return _streams[0]


def _quantize_like(model: Any, weights: dict[str, Any]) -> None:
    """Turn the modules whose GGUF weights are quantized into MLX quantized modules."""

    def predicate(path: str, module: Any) -> Any:
        scales = weights.get(f"{path}.scales")
        if scales is None or not hasattr(module, "to_quantized"):
            return False
        group_size, bits = _group_bits(weights[f"{path}.weight"], scales)
        return {"group_size": group_size, "bits": bits}

    nn.quantize(model, class_predicate=predicate)


def _directory_config_fixes(path: Path) -> dict[str, Any]:
    """Config keys mlx-lm reads differently from what transformers 5 writes.

    transformers 5 moves rope settings under ``rope_parameters`` (per attention type for Gemma 3);
    mlx-lm's ``ModelArgs`` read top-level ``rope_theta`` / ``rope_scaling`` /
    ``partial_rotary_factor`` / ``rope_local_base_freq`` and would silently fall back to their
    defaults (every prediction shifts). Returns only the keys to add.
    """
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    rope = config.get("rope_parameters")
    if not isinstance(rope, dict):
        return {}
    fixes: dict[str, Any] = {}
    per_type = isinstance(rope.get("full_attention"), dict) or isinstance(rope.get("sliding_attention"), dict)
    main = rope.get("full_attention", {}) if per_type else rope
    if "rope_theta" in main and "rope_theta" not in config:
        fixes["rope_theta"] = main["rope_theta"]
    if per_type and "rope_theta" in rope.get("sliding_attention", {}) and "rope_local_base_freq" not in config:
        fixes["rope_local_base_freq"] = rope["sliding_attention"]["rope_theta"]
    if "partial_rotary_factor" in main and "partial_rotary_factor" not in config:
        fixes["partial_rotary_factor"] = main["partial_rotary_factor"]
    kind = main.get("rope_type", main.get("type", "default"))
    if kind != "default" and not config.get("rope_scaling"):
        scaling = {k: v for k, v in main.items() if k not in ("rope_theta", "partial_rotary_factor")}
        fixes["rope_scaling"] = {**scaling, "type": kind, "rope_type": kind}
    return fixes


def _load_directory(
    resolved: ResolvedModel, plan: _Planner, lazy: bool = False
) -> tuple[Any, dict[str, Any], Tokenizer, str]:
    from .tokenizer import tokenizer_from_hf

    path = Path(resolved.path)
    if not (path / "config.json").is_file():
        raise LazarusError(f"{path} is not a model directory (no config.json)")
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise LazarusError(f"{path / 'config.json'} is not valid JSON: {exc}") from None
    model_type = config.get("model_type")
    if not model_type:
        raise LazarusError(f"{path / 'config.json'} has no model_type")
    get_family(model_type)
    mlx_lm_light.full_mlx_lm()
    from mlx_lm.utils import dequantize_model, load_tokenizer
    from mlx_lm.utils import load_model as mlx_load_model

    try:
        model, config = mlx_load_model(path, lazy=lazy, model_config=_directory_config_fixes(path))
    except FileNotFoundError as exc:
        raise LazarusError(f"cannot load {path}: {exc}") from None
    except ValueError as exc:
        raise LazarusError(f"cannot load {path}: {str(exc).splitlines()[0]}") from None
    quant = config.get("quantization")
    stored = (
        f"{quant.get('bits')}-bit quantized"
        if isinstance(quant, dict)
        else str(config.get("torch_dtype") or config.get("dtype") or "")
    )
    to_float32 = plan.choose(streamed.weight_sizes(model, list(getattr(model, "layers", [])))) == "float32"
    if to_float32:
        if quant:
            model = dequantize_model(model)
        model.set_dtype(mx.float32)
    try:
        hf_tok = load_tokenizer(path)
    except Exception as exc:  # transformers raises many types for broken tokenizer files
        raise LazarusError(f"cannot load the tokenizer of {path}: {str(exc).splitlines()[0]}") from None
    return model, config, tokenizer_from_hf(hf_tok), stored


def check_adapter_dir(adapter: str) -> Path:
    """Fail before the model loads: files, config values and weight kind (see ``adapters.check_adapter``)."""
    from .adapters import check_adapter

    return check_adapter(adapter)


def _apply_adapter(model: Any, config: dict[str, Any], adapter: str, swap: bool = False) -> None:
    """Apply ``adapter`` (a folder, or one checkpoint file of a folder) to ``model`` in place. ``swap``: the
    model already carries LoRA layers made from the same ``adapter_config.json`` (another checkpoint of the
    folder): only the adapter weights are replaced."""
    from .adapters import adapter_files

    path = check_adapter_dir(adapter)
    _, weights_file = adapter_files(adapter)
    if any(isinstance(m, (streamed.GGUFBlocksLinear, streamed.GGUFBlocksEmbedding)) for _, m in model.named_modules()):
        raise LazarusError(
            f"adapter {adapter}: LoRA adapters cannot be applied to a k-quant GGUF kept as stored under --max-memory "
            "yet; give a budget that holds its float32 weights"
        )
    cfg_file = path / "adapter_config.json"
    try:
        cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LazarusError(f"{cfg_file} is not valid JSON: {exc}") from None
    n_model = len(model.layers)
    n_adapter = cfg.get("num_layers") if isinstance(cfg, dict) else None
    if isinstance(n_adapter, int) and n_adapter > n_model:
        raise LazarusError(
            f"adapter {adapter} does not fit this model: it adapts {n_adapter} layers, this model has {n_model}"
        )
    load_adapters = mlx_lm_light.adapter_loader()
    try:
        if weights_file == path / "adapters.safetensors" and not swap:
            load_adapters(model, str(path))
        else:
            _load_adapter_file(model, cfg, weights_file, convert=not swap)
    except ValueError as exc:
        # mlx-lm: "Adapter at X contains incompatible tensors:" then one line per tensor.
        lines = [line.strip() for line in str(exc).splitlines()]
        details = [line for line in lines[1:] if line]
        detail = details[0] if details else lines[0]
        more = f" (and {len(details) - 1} more tensors)" if len(details) > 1 else ""
        raise LazarusError(f"adapter {adapter} does not fit this model: {detail}{more}") from None
    except (KeyError, AttributeError, TypeError) as exc:  # config without num_layers / lora_parameters / scale
        raise LazarusError(f"{cfg_file} is not an mlx-lm adapter config: {exc}") from None
    except RuntimeError as exc:  # mx.load on an unreadable safetensors file
        raise LazarusError(f"cannot read {weights_file}: {exc}") from None


def _load_adapter_file(model: Any, cfg: dict[str, Any], weights_file: Path, convert: bool) -> None:
    """mlx-lm's ``load_adapters`` for a weights file other than the folder's ``adapters.safetensors`` (a
    training checkpoint), with the same checks; ``convert=False``: the LoRA layers are already in place."""
    from mlx_lm.tuner.utils import linear_to_lora_layers

    kind = cfg.get("fine_tune_type", "lora")
    if kind != "full" and convert:
        linear_to_lora_layers(model, cfg["num_layers"], cfg["lora_parameters"], use_dora=kind == "dora")
    weights = mx.load(str(weights_file))
    params = dict(tree_flatten(model.parameters()))
    if kind != "full":
        params = {k: v for k, v in params.items() if k.rsplit(".", 1)[-1] in ("lora_a", "lora_b", "m")}
    errors = [
        f"  {name}: not an adapter parameter in the model"
        if name not in params
        else f"  {name}: adapter shape {tuple(w.shape)} does not match model parameter shape {tuple(params[name].shape)}"
        for name, w in weights.items()
        if name not in params or w.shape != params[name].shape
    ]
    if errors:
        raise ValueError(f"Adapter at {weights_file} contains incompatible tensors:\n" + "\n".join(errors))
    model.load_weights(list(weights.items()), strict=False)


def with_adapter(loaded: LoadedModel, adapter: str, swap: bool = False) -> LoadedModel:
    """The same loaded model with a LoRA adapter applied in place (base vs fine-tuned without a
    second load). ``loaded`` must not be used afterwards. ``swap``: ``loaded`` carries another checkpoint of
    the same adapter folder (``same_adapter_layout``); only the adapter weights are replaced."""
    if loaded.parts.shard is not None:  # its linears are split or its blocks spread over the ranks
        raise LazarusError("an adapter cannot be applied to a model already sharded over several ranks")
    start = time.perf_counter()
    _apply_adapter(loaded.model, loaded.config, adapter, swap=swap)
    loaded.model.eval()
    mx.eval(loaded.model.parameters())
    return dataclasses.replace(
        loaded,
        parts=LensParts.of(loaded.model, loaded.config["model_type"]),
        info=dataclasses.replace(loaded.info, adapter=str(adapter)),
        load_seconds=time.perf_counter() - start,
    )
