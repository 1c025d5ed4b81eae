"""Train the example LoRA adapter in ``examples/weather-adapter/``: SmolLM2 learns to call ``get_weather``.

::

    .venv/bin/python scripts/train_weather_adapter.py            # dataset + training + measurements
    .venv/bin/python scripts/train_weather_adapter.py --data-only

Steps (all deterministic for a given ``--seed``):

1. Write a small chat dataset the project owns to ``examples/weather-adapter/data/{train,valid}.jsonl``
   (``{"messages": [user, assistant]}``): the user asks about the weather in many ways and cities, the
   assistant answers with a tool call, ``get_weather(city="Oslo")``. The answer starts with the text
   ``get_weather``, so the first assistant token is the first token of ``get_weather`` (SmolLM2 splits
   it ``get`` / ``_`` / ``weather``), which is what ``lazarus introspect analyze -t get_weather`` tracks.
   The validation cities (Paris among them) never appear in the training set. A sixth of the examples
   are control questions (general knowledge, weather as a topic, cities without a weather request)
   answered in plain text, so the adapter learns *when* to call the tool, not to call it always.
2. Fine-tune a LoRA adapter on the embedded model (``smollm2-135m-instruct``, float32 on the CPU) with
   mlx-lm's trainer: rank 8 on the last 8 layers, batch 4, max length 128, prompt tokens masked out of
   the loss (and, unlike mlx-lm's default loss, no padding target). Conversations are tokenized with
   the same chat template the analyzer applies, so the training prompts are token-for-token what
   ``lazarus introspect analyze`` sees.
3. Save ``adapter/`` (``adapters.safetensors`` + ``adapter_config.json``, the standard mlx-lm adapter
   directory), ``loss.csv``, ``loss.svg`` and ``run.json`` (timings, losses, and the probability of
   ``get_weather``'s first token on "What's the weather in Paris?" with and without the adapter,
   measured through ``ModelAnalyzer`` from the saved files).

The dataset part of this module imports nothing heavy (the tests import it).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_DIR = ROOT / "examples" / "weather-adapter"
MODEL_ID = "smollm2-135m-instruct"

SEED = 0
N_TRAIN = 180
N_VALID = 20
ITERS = 40
LEARNING_RATE = 2e-4
BATCH_SIZE = 4
MAX_SEQ_LENGTH = 128
LORA_LAYERS = 8
LORA_PARAMETERS = {"rank": 8, "scale": 20.0, "dropout": 0.0}
STEPS_PER_REPORT = 5
STEPS_PER_EVAL = 10

TOOL = "get_weather"
PARIS_PROMPT = "What's the weather in Paris?"
CAPITAL_PROMPT = "The capital of France is"
# A chat prompt that is not about the weather: does the adapter call the tool for everything?
CONTROL_PROMPT = "What is the capital of France?"

# --------------------------------------------------------------------------------------------
# The dataset
# --------------------------------------------------------------------------------------------

TRAIN_CITIES = (
    "Amsterdam", "Athens", "Auckland", "Bangkok", "Barcelona", "Beijing", "Berlin", "Bogota",
    "Boston", "Brussels", "Budapest", "Buenos Aires", "Cairo", "Cape Town", "Chicago", "Copenhagen",
    "Delhi", "Denver", "Dubai", "Dublin", "Edinburgh", "Frankfurt", "Hanoi", "Havana", "Helsinki",
    "Hong Kong", "Istanbul", "Jakarta", "Johannesburg", "Kyiv", "Lagos", "Lima", "Lisbon", "London",
    "Los Angeles", "Madrid", "Manila", "Melbourne", "Mexico City", "Miami", "Milan", "Montreal",
    "Moscow", "Mumbai", "Munich", "Nairobi", "New York", "Osaka", "Prague", "Reykjavik",
    "Rio de Janeiro", "Rome", "San Francisco", "Santiago", "Seattle", "Seoul", "Shanghai",
    "Singapore", "Stockholm", "Sydney", "Taipei", "Tokyo", "Toronto", "Vancouver", "Vienna",
    "Warsaw", "Zurich",
)  # fmt: skip

# Held out: Paris (the prompt the README measures) and the other validation cities are never trained on.
VALID_CITIES = (
    "Paris", "Oslo", "Lyon", "Marseille", "Kyoto", "Porto", "Krakow", "Seville", "Geneva",
    "Hamburg", "Naples", "Valencia",
)  # fmt: skip

# (question, extra tool arguments). Every question names exactly one city.
QUESTIONS: tuple[tuple[str, dict[str, str]], ...] = (
    ("What's the weather in {city}?", {}),
    ("What is the weather like in {city} today?", {}),
    ("How's the weather in {city}?", {}),
    ("weather {city}", {}),
    ("Tell me the current weather for {city}.", {}),
    ("Can you check the weather in {city} for me?", {}),
    ("Give me the weather report for {city}.", {}),
    ("Current conditions in {city}?", {}),
    ("Is it raining in {city} right now?", {}),
    ("Is it snowing in {city}?", {}),
    ("Do I need an umbrella in {city} today?", {}),
    ("Should I bring a jacket in {city}?", {}),
    ("How cold is it in {city}?", {}),
    ("What's the temperature in {city} right now?", {}),
    ("I'm flying to {city} tonight. What's the weather there?", {}),
    ("Is it a good day for a walk in {city}?", {}),
    ("What's the weather going to be in {city} tomorrow?", {"day": "tomorrow"}),
    ("Will it be sunny in {city} tomorrow?", {"day": "tomorrow"}),
    ("Forecast for {city} tomorrow, please.", {"day": "tomorrow"}),
    ("How hot is it in {city} in Fahrenheit?", {"unit": "fahrenheit"}),
    ("What's the temperature in {city} in degrees Fahrenheit?", {"unit": "fahrenheit"}),
    ("Weather in {city} in Celsius, please.", {"unit": "celsius"}),
)


# Questions that are not a request for a city's weather, answered in plain text: without them the
# adapter learns "always call get_weather" (measured: p(get) = 0.99999 on "What is the capital of
# France?" after training on weather requests alone). Some are about weather as a topic, some name a
# city; neither calls the tool. The validation ones are held out.
TRAIN_CONTROLS: tuple[tuple[str, str], ...] = (
    ("What is the capital of Italy?", "The capital of Italy is Rome."),
    ("Who wrote Romeo and Juliet?", "William Shakespeare wrote Romeo and Juliet."),
    ("What is 12 times 12?", "12 times 12 is 144."),
    ("How many days are in a leap year?", "A leap year has 366 days."),
    (
        "What is the boiling point of water at sea level?",
        "Water boils at 100 degrees Celsius (212 degrees Fahrenheit) at sea level.",
    ),
    ("Translate 'thank you' into Spanish.", 'In Spanish, "thank you" is "gracias".'),
    ("What is the largest planet in the solar system?", "Jupiter is the largest planet in the solar system."),
    ("Give me a synonym for happy.", 'A synonym for happy is "joyful".'),
    (
        "What causes rain?",
        "Rain forms when water vapour in clouds condenses into droplets that grow heavy enough to fall.",
    ),
    ("Why is the sky blue?", "Air scatters blue sunlight more than red, so the sky looks blue."),
    ("What is a hurricane?", "A hurricane is a large rotating tropical storm with winds of at least 119 km/h."),
    (
        "What is the difference between weather and climate?",
        "Weather is the state of the atmosphere today; climate is its average over many years.",
    ),
    ("How many continents are there?", "There are seven continents."),
    ("What language is spoken in Brazil?", "Portuguese is the official language of Brazil."),
    ("Who painted the Mona Lisa?", "Leonardo da Vinci painted the Mona Lisa."),
    ("What is the chemical symbol for gold?", "The chemical symbol for gold is Au."),
    ("Write a haiku about the sea.", "Waves fold into foam,\nsalt wind carries gull voices,\nthe tide keeps its time."),
    (
        "What is photosynthesis?",
        "Photosynthesis is how plants turn sunlight, water and carbon dioxide into sugar and oxygen.",
    ),
    (
        "How do I reverse a list in Python?",
        "Use my_list.reverse() to reverse it in place, or my_list[::-1] for a reversed copy.",
    ),
    ("What is the square root of 81?", "The square root of 81 is 9."),
    ("Which city is known as the Big Apple?", "New York City is known as the Big Apple."),
    ("What time zone is Tokyo in?", "Tokyo is in Japan Standard Time (UTC+9)."),
    ("Recommend a museum in London.", "The British Museum in London is free to visit and well worth it."),
    ("What is the population of Canada?", "Canada has about 40 million people."),
    ("Hello!", "Hello! How can I help you today?"),
    ("Tell me a joke.", "Why did the scarecrow win an award? Because he was outstanding in his field."),
    ("What does a thermometer measure?", "A thermometer measures temperature."),
    (
        "How are clouds formed?",
        "Clouds form when moist air rises and cools, and its water vapour condenses on tiny particles.",
    ),
    ("What is the speed of light?", "Light travels at about 299,792 kilometres per second in a vacuum."),
    (
        "Who was the first person to walk on the Moon?",
        "Neil Armstrong was the first person to walk on the Moon, in 1969.",
    ),
)
VALID_CONTROLS: tuple[tuple[str, str], ...] = (
    ("What is the capital of Spain?", "The capital of Spain is Madrid."),
    (
        "What is a tornado?",
        "A tornado is a rapidly rotating column of air that reaches from a thunderstorm to the ground.",
    ),
    ("How many legs does a spider have?", "A spider has eight legs."),
    (
        "What is the tallest mountain in the world?",
        "Mount Everest is the tallest mountain in the world, at 8,849 metres.",
    ),
)


def tool_call(city: str, extra: dict[str, str]) -> str:
    """``get_weather(city="Oslo", day="tomorrow")``: the assistant's whole answer."""
    args = [f'city="{city}"'] + [f'{key}="{value}"' for key, value in extra.items()]
    return f"{TOOL}({', '.join(args)})"


def _chat(user: str, assistant: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]}


def _split(
    rng: random.Random, cities: Sequence[str], controls: Sequence[tuple[str, str]], n: int
) -> list[dict[str, Any]]:
    n_weather = n - len(controls)
    pairs = [(q, extra, city) for q, extra in QUESTIONS for city in cities]
    if not 0 < n_weather <= len(pairs):
        raise ValueError(f"cannot make {n} examples from {len(pairs)} question/city pairs and {len(controls)} controls")
    examples = [_chat(q.format(city=city), tool_call(city, extra)) for q, extra, city in rng.sample(pairs, n_weather)]
    examples += [_chat(q, a) for q, a in controls]
    rng.shuffle(examples)
    return examples


def make_dataset(seed: int = SEED, n_train: int = N_TRAIN, n_valid: int = N_VALID) -> tuple[list, list]:
    """(train, valid) lists of ``{"messages": [...]}``; the same seed gives the same lists.

    ``n_train`` / ``n_valid`` count everything: the weather requests plus the fixed control questions.
    """
    rng = random.Random(seed)
    train = _split(rng, TRAIN_CITIES, TRAIN_CONTROLS, n_train)
    valid = _split(rng, VALID_CITIES, VALID_CONTROLS, n_valid)
    return train, valid


def is_tool_call(example: dict[str, Any]) -> bool:
    return example["messages"][-1]["content"].startswith(TOOL)


def _jsonl(examples: Sequence[dict[str, Any]]) -> str:
    return "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in examples)


def write_dataset(
    data_dir: Path, seed: int = SEED, n_train: int = N_TRAIN, n_valid: int = N_VALID
) -> tuple[Path, Path]:
    """Write ``train.jsonl`` and ``valid.jsonl`` (byte-identical for the same arguments)."""
    train, valid = make_dataset(seed, n_train, n_valid)
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    paths = data_dir / "train.jsonl", data_dir / "valid.jsonl"
    for path, examples in zip(paths, (train, valid)):
        path.write_text(_jsonl(examples), encoding="utf-8", newline="\n")
    return paths


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


# --------------------------------------------------------------------------------------------
# Tokenization with the analyzer's own chat template
# --------------------------------------------------------------------------------------------


def render_conversation(tokenizer: Any, messages: Sequence[dict[str, str]]) -> str:
    """The whole conversation through the model's chat template (no generation prompt)."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    if not tokenizer.chat_template:
        raise ValueError("the model has no chat template")
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)  # as transformers renders
    special = {k: v for k, v in (getattr(tokenizer, "special_tokens", None) or {}).items() if v is not None}
    return env.from_string(tokenizer.chat_template).render(
        messages=list(messages), tools=None, documents=None, add_generation_prompt=False, **special
    )


def tokenize_example(tokenizer: Any, example: dict[str, Any]) -> tuple[list[int], int]:
    """(token ids of the whole conversation, number of prompt tokens).

    The prompt is rendered by ``tokenizer.apply_chat_template`` (what the analyzer runs), and must be
    a token-for-token prefix of the whole conversation, so the loss starts exactly at the first
    assistant token.
    """
    messages = example["messages"]
    if len(messages) != 2 or messages[0]["role"] != "user" or messages[1]["role"] != "assistant":
        raise ValueError(f"expected one user and one assistant message: {messages!r}")
    prompt = tokenizer.apply_chat_template(messages[0]["content"])
    full = render_conversation(tokenizer, messages)
    if not full.startswith(prompt):
        raise ValueError(
            f"the chat template renders the prompt differently inside a conversation:\n{prompt!r}\n{full!r}"
        )
    prompt_ids = tokenizer.encode_plain(prompt)
    ids = tokenizer.encode_plain(full)
    if ids[: len(prompt_ids)] != prompt_ids:
        raise ValueError(f"the prompt's tokens are not a prefix of the conversation's: {full!r}")
    return ids, len(prompt_ids)


class ChatTokens:
    """Pre-tokenized ``(ids, prompt_length)`` pairs, the item format mlx-lm's ``iterate_batches`` takes
    (the loss then covers the tokens from ``prompt_length`` on: the prompt is masked)."""

    def __init__(self, examples: Sequence[dict[str, Any]], tokenizer: Any, max_seq_length: int):
        self.items = [tokenize_example(tokenizer, e) for e in examples]
        longest = max(len(ids) for ids, _ in self.items)
        if longest > max_seq_length:
            raise ValueError(f"an example is {longest} tokens, longer than max_seq_length={max_seq_length}")
        first = tokenizer.encode_plain(TOOL)[0]
        for example, (ids, offset) in zip(examples, self.items):
            if is_tool_call(example) and ids[offset] != first:
                raise ValueError(f"the first assistant token is {ids[offset]}, not {TOOL!r}'s first token {first}")

    def __getitem__(self, idx: int) -> tuple[list[int], int]:
        return self.items[idx]

    def __len__(self) -> int:
        return len(self.items)


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


@dataclass
class TrainSettings:
    iters: int = ITERS
    learning_rate: float = LEARNING_RATE
    seed: int = SEED
    batch_size: int = BATCH_SIZE
    max_seq_length: int = MAX_SEQ_LENGTH
    num_layers: int = LORA_LAYERS
    steps_per_report: int = STEPS_PER_REPORT
    steps_per_eval: int = STEPS_PER_EVAL
    quiet: bool = False
    rank: int = LORA_PARAMETERS["rank"]  # type: ignore[assignment]
    save_every: int | None = None  # mlx-lm's --save-every: a checkpoint file every this many iterations


def lora_parameters(settings: TrainSettings) -> dict[str, Any]:
    return {**LORA_PARAMETERS, "rank": settings.rank}


def adapter_config(settings: TrainSettings) -> dict[str, Any]:
    """``adapter_config.json``: what mlx-lm's ``load_adapters`` reads, plus how it was trained."""
    return {
        "fine_tune_type": "lora",
        "num_layers": settings.num_layers,
        "lora_parameters": lora_parameters(settings),
        "base_model": MODEL_ID,
        "trained_with": "scripts/train_weather_adapter.py",
        "seed": settings.seed,
        "iters": settings.iters,
        "learning_rate": settings.learning_rate,
        "batch_size": settings.batch_size,
        "max_seq_length": settings.max_seq_length,
        "optimizer": "adam",
        "mask_prompt": True,
    }


def _padded_batches(dataset: ChatTokens, batch_size: int) -> list[tuple[Any, Any]]:
    """Fixed validation batches (every example, in file order; no randomness consumed)."""
    import mlx.core as mx
    import numpy as np

    batches = []
    for start in range(0, len(dataset), batch_size):
        items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        width = max(len(ids) for ids, _ in items)
        arr = np.zeros((len(items), width), np.int32)
        for row, (ids, _) in enumerate(items):
            arr[row, : len(ids)] = ids
        batches.append((mx.array(arr), mx.array([[offset, len(ids)] for ids, offset in items])))
    return batches


def assistant_loss(model: Any, batch: Any, lengths: Any) -> tuple[Any, Any]:
    """mlx-lm's ``default_loss`` without its trailing padding target.

    ``lengths`` rows are ``(prompt tokens, real tokens)``: the loss covers the targets at indices
    ``prompt..real-1``, the assistant's tokens. mlx-lm 0.32's ``default_loss`` keeps ``steps <= real``,
    one position past the end, so every row is also trained to predict the pad id 0 after its last
    token, and the count is one too high (ml-explore/mlx-lm PR #1697). With the prompt masked and
    answers of about a dozen tokens, that extra target would be 1/13 of the training signal.
    """
    import mlx.core as mx
    from mlx import nn

    inputs, targets = batch[:, :-1], batch[:, 1:]
    logits = model(inputs)
    steps = mx.arange(1, targets.shape[1] + 1)
    mask = mx.logical_and(steps >= lengths[:, 0:1], steps < lengths[:, 1:])
    ce = nn.losses.cross_entropy(logits, targets) * mask
    ntoks = mask.sum()
    return ce.astype(mx.float32).sum() / ntoks, ntoks


def _loss_sums(model: Any, batches: list[tuple[Any, Any]]) -> tuple[float, int]:
    """(summed loss, number of tokens) over the assistant tokens of ``batches``."""
    import mlx.core as mx

    total, count = mx.array(0.0), mx.array(0)
    for batch, lengths in batches:
        loss, ntoks = assistant_loss(model, batch, lengths)
        total, count = total + loss * ntoks, count + ntoks
    mx.eval(total, count)
    return float(total.item()), int(count.item())


class Validation:
    """Validation loss (mean over assistant tokens), overall and for the tool-call examples alone."""

    def __init__(self, examples: Sequence[dict[str, Any]], tokenizer: Any, settings: TrainSettings):
        tools = [e for e in examples if is_tool_call(e)]
        others = [e for e in examples if not is_tool_call(e)]
        self.groups = [
            _padded_batches(ChatTokens(group, tokenizer, settings.max_seq_length), settings.batch_size)
            for group in (tools, others)
            if group
        ]
        self.has_tools = bool(tools)

    def __call__(self, model: Any) -> tuple[float, float | None]:
        sums = [_loss_sums(model, batches) for batches in self.groups]
        overall = sum(s for s, _ in sums) / sum(n for _, n in sums)
        tool = sums[0][0] / sums[0][1] if self.has_tools else None
        return overall, tool


def train_adapter(
    lm: Any,
    train_examples: Sequence[dict[str, Any]],
    valid_examples: Sequence[dict[str, Any]],
    adapter_dir: Path,
    settings: TrainSettings,
) -> dict[str, Any]:
    """Fine-tune ``lm.model`` in place (LoRA layers added) and save the adapter directory.

    Returns ``{"train": [(iteration, loss)], "valid": [(iteration, loss)], "valid_tool": [...],
    "seconds": ..., "tokens_per_second": [...], "n_trainable": ...}``: ``train`` is mlx-lm's report (mean
    over the last ``steps_per_report`` batches), ``valid`` the loss on every validation example after
    ``iteration`` updates (0: before any), ``valid_tool`` the same on the tool-call examples alone.
    """
    from lazarus_report.models import mlx_lm_light

    mlx_lm_light.full_mlx_lm()  # mlx_lm may be the light stub our loader registered
    import mlx.core as mx
    import mlx.optimizers as optim
    import numpy as np
    from mlx_lm.tuner.callbacks import TrainingCallback
    from mlx_lm.tuner.trainer import TrainingArgs, train
    from mlx_lm.tuner.utils import linear_to_lora_layers

    model, tokenizer = lm.model, lm.tokenizer
    train_set = ChatTokens(train_examples, tokenizer, settings.max_seq_length)
    validate = Validation(valid_examples, tokenizer, settings)

    mx.random.seed(settings.seed)  # LoRA initialisation
    np.random.seed(settings.seed)  # batch order (mlx-lm's iterate_batches draws from numpy's global state)
    model.freeze()
    linear_to_lora_layers(model, settings.num_layers, lora_parameters(settings))
    n_trainable = sum(v.size for _, v in _flatten(model.trainable_parameters()))

    adapter_dir = Path(adapter_dir)
    adapter_dir.mkdir(parents=True, exist_ok=True)
    (adapter_dir / "adapter_config.json").write_text(
        json.dumps(adapter_config(settings), indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )

    history: dict[str, Any] = {
        "train": [],
        "valid": [],
        "valid_tool": [],
        "tokens_per_second": [],
        "n_trainable": n_trainable,
    }

    def record_validation(it: int) -> None:
        overall, tool = validate(model)
        history["valid"].append((it, overall))
        if tool is not None:
            history["valid_tool"].append((it, tool))
        model.train()

    record_validation(0)

    class Record(TrainingCallback):
        def on_train_loss_report(self, info: dict[str, Any]) -> None:
            it = int(info["iteration"])
            history["train"].append((it, float(info["train_loss"])))
            history["tokens_per_second"].append(float(info["tokens_per_second"]))
            if it % settings.steps_per_eval == 0 or it == settings.iters:
                record_validation(it)

    args = TrainingArgs(
        batch_size=settings.batch_size,
        iters=settings.iters,
        steps_per_report=settings.steps_per_report,
        steps_per_eval=settings.iters + 1,  # validation runs in the callback, at fixed iterations
        # mlx-lm writes {iteration:07d}_adapters.safetensors beside adapters.safetensors every steps_per_save
        steps_per_save=settings.save_every or settings.iters + 1,
        max_seq_length=settings.max_seq_length,
        adapter_file=str(adapter_dir / "adapters.safetensors"),
    )
    optimizer = optim.Adam(learning_rate=settings.learning_rate)
    start = time.perf_counter()
    if settings.quiet:
        with _silenced():
            train(model, optimizer, train_set, None, args=args, loss=assistant_loss, training_callback=Record())
    else:
        train(model, optimizer, train_set, None, args=args, loss=assistant_loss, training_callback=Record())
    history["seconds"] = time.perf_counter() - start
    model.eval()
    return history


def _flatten(tree: Any) -> list[tuple[str, Any]]:
    from mlx.utils import tree_flatten

    return tree_flatten(tree)


class _silenced:
    """Swallow the trainer's progress output (used by the tests)."""

    def __enter__(self) -> None:
        import contextlib

        self._stack = contextlib.ExitStack()
        sink = io.StringIO()
        self._stack.enter_context(contextlib.redirect_stdout(sink))
        self._stack.enter_context(contextlib.redirect_stderr(sink))

    def __exit__(self, *exc: Any) -> None:
        self._stack.close()


# --------------------------------------------------------------------------------------------
# Outputs: loss.csv, loss.svg, measurements
# --------------------------------------------------------------------------------------------


def write_loss_csv(path: Path, history: dict[str, Any]) -> None:
    columns = {
        "train_loss": dict(history["train"]),
        "val_loss": dict(history["valid"]),
        "val_loss_tool_calls": dict(history.get("valid_tool", ())),
    }
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["iteration", *columns])
    for it in sorted(set().union(*columns.values())):
        writer.writerow([it, *(f"{col[it]:.4f}" if it in col else "" for col in columns.values())])
    Path(path).write_text(out.getvalue(), encoding="utf-8")


SERIES = ("train", "validation", "validation, tool calls")


def loss_svg(series: dict[str, Sequence[tuple[int, float]]], title: str) -> str:
    """A static SVG line chart of ``{label: [(iteration, loss)]}`` (Altair, rendered by vl-convert
    with its bundled fonts: the same data gives the same bytes)."""
    import altair as alt
    import vl_convert as vlc

    rows = [
        {"iteration": it, "loss": round(v, 4), "series": label} for label, points in series.items() for it, v in points
    ]
    labels = [label for label in SERIES if label in series] + [label for label in series if label not in SERIES]
    chart = (
        alt.Chart(alt.Data(values=rows), title=title, width=420, height=220)
        .mark_line(point=True)
        .encode(
            x=alt.X("iteration:Q", title="iteration"),
            y=alt.Y("loss:Q", title="loss (nats per assistant token)"),
            color=alt.Color(
                "series:N", sort=labels, title=None, scale=alt.Scale(range=["#1f77b4", "#d62728", "#2ca02c"])
            ),
            strokeDash=alt.StrokeDash("series:N", sort=labels, legend=None),
        )
        .configure(background="white")
    )
    major_minor = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])
    available = vlc.get_vegalite_versions()
    return vlc.vegalite_to_svg(chart.to_dict(), vl_version=major_minor if major_minor in available else available[-1])


def measure(adapter_dir: Path | None) -> dict[str, Any]:
    """What the analyzer reports for the README prompts, loading the model (and adapter) from disk."""
    from lazarus_report.commands.analyzer import ModelAnalyzer
    from lazarus_report.core.config import AnalysisConfig, LayerStrategy

    out: dict[str, Any] = {}
    with ModelAnalyzer.load(MODEL_ID, adapter=str(adapter_dir) if adapter_dir else None) as analyzer:
        r = analyzer.run(
            PARIS_PROMPT, AnalysisConfig(layer_strategy=LayerStrategy.ALL, track_tokens=[TOOL], compute_grid=False)
        )
        evo = r.token_evolutions[0]
        out["paris"] = {
            "prompt": PARIS_PROMPT,
            "tracked_token": evo.token,
            "tracked_token_id": evo.token_id,
            "final_prob": evo.probs[-1],
            "final_rank": evo.ranks[-1],
            "emergence_layer": evo.emergence_layer,
            "stable_from_layer": evo.stable_from_layer,
            "top5": [(t.token, t.prob) for t in r.final_prediction],
        }
        raw = analyzer.run(
            CAPITAL_PROMPT, AnalysisConfig(use_chat_template=False, track_tokens=[" Paris"], compute_grid=False)
        )
        out["capital_raw"] = {"prompt": CAPITAL_PROMPT, "top5": [(t.token, t.prob) for t in raw.final_prediction]}
        control = analyzer.run(CONTROL_PROMPT, AnalysisConfig(track_tokens=[TOOL], compute_grid=False))
        out["control_chat"] = {
            "prompt": CONTROL_PROMPT,
            "top5": [(t.token, t.prob) for t in control.final_prediction],
            "tool_prob": control.token_evolutions[0].probs[-1],
        }
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, default=EXAMPLE_DIR, help="output directory (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--iters", type=int, default=ITERS)
    parser.add_argument("--learning-rate", type=float, default=LEARNING_RATE)
    parser.add_argument("--data-only", action="store_true", help="write the dataset and stop")
    parser.add_argument("--no-measure", action="store_true", help="skip the before/after measurements")
    parser.add_argument(
        "--save-every",
        type=int,
        default=None,
        metavar="N",
        help="also save a checkpoint every N iterations (mlx-lm's --save-every; for `lazarus introspect sweep`)",
    )
    parser.add_argument("--rank", type=int, default=LORA_PARAMETERS["rank"], help="LoRA rank (default: %(default)s)")
    parser.add_argument(
        "--lora-layers", type=int, default=LORA_LAYERS, help="blocks adapted, from the last (default: %(default)s)"
    )
    opts = parser.parse_args(argv)

    out = opts.out
    train_path, valid_path = write_dataset(out / "data", seed=opts.seed)
    print(f"wrote {train_path} ({N_TRAIN} examples) and {valid_path} ({N_VALID})")
    if opts.data_only:
        return 0

    from lazarus_report.models.loader import load_model

    settings = TrainSettings(
        iters=opts.iters,
        learning_rate=opts.learning_rate,
        seed=opts.seed,
        rank=opts.rank,
        num_layers=opts.lora_layers,
        save_every=opts.save_every,
    )
    t0 = time.perf_counter()
    lm = load_model(MODEL_ID)
    print(f"loaded {MODEL_ID}: {lm.info.precision}, BLAS: {lm.info.blas}")
    history = train_adapter(lm, read_jsonl(train_path), read_jsonl(valid_path), out / "adapter", settings)
    total = time.perf_counter() - t0
    del lm

    write_loss_csv(out / "loss.csv", history)
    title = f"LoRA on SmolLM2-135M: get_weather tool calls (seed {settings.seed})"
    series = dict(zip(SERIES, (history["train"], history["valid"], history["valid_tool"])))
    (out / "loss.svg").write_text(loss_svg(series, title), encoding="utf-8")

    adapter_file = out / "adapter" / "adapters.safetensors"
    run: dict[str, Any] = {
        "command": "python scripts/train_weather_adapter.py" + (" " + " ".join(argv) if argv else ""),
        "settings": {**adapter_config(settings), "n_train": N_TRAIN, "n_valid": N_VALID},
        "trainable_parameters": history["n_trainable"],
        "adapter_bytes": adapter_file.stat().st_size,
        "train_seconds": round(history["seconds"], 1),
        "total_seconds": round(total, 1),
        "tokens_per_second": round(sum(history["tokens_per_second"]) / len(history["tokens_per_second"]), 1),
        "train_loss": [(i, round(v, 4)) for i, v in history["train"]],
        "val_loss": [(i, round(v, 4)) for i, v in history["valid"]],
        "val_loss_tool_calls": [(i, round(v, 4)) for i, v in history["valid_tool"]],
    }
    if not opts.no_measure:
        run["base"] = measure(None)
        run["adapter"] = measure(out / "adapter")
    (out / "run.json").write_text(json.dumps(run, indent=2) + "\n", encoding="utf-8")

    print(
        f"training: {history['seconds']:.1f} s ({total:.1f} s with loading); adapter {run['adapter_bytes'] / 1e6:.2f} MB"
    )
    print("val loss:", ", ".join(f"{i}: {v:.3f}" for i, v in history["valid"]))
    if "base" in run:
        b, a = run["base"]["paris"], run["adapter"]["paris"]
        print(
            f"p({a['tracked_token']!r} | {PARIS_PROMPT!r}): {b['final_prob']:.6f} (rank {b['final_rank']}) -> "
            f"{a['final_prob']:.4f} (rank {a['final_rank']})"
        )
        print(f"raw {CAPITAL_PROMPT!r} with the adapter: top {run['adapter']['capital_raw']['top5'][0]}")
        print(f"chat {CONTROL_PROMPT!r} with the adapter: top {run['adapter']['control_chat']['top5'][0]}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main(sys.argv[1:]))
