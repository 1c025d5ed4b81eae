"""Generate the default lens corpus once: SmolLM2-135M-Instruct's own answers to varied seed prompts.

Self-distillation (the tuned-lens authors' suggestion for a corpus that matches the model): every
seed prompt below goes through the model's chat template, and the model samples an answer
(temperature 0.8, top-p 0.95, fixed seed, batched with mlx-lm's ``batch_generate``). The output,
``lazarus_report/lens/learned/data/default_corpus.jsonl.gz``, holds one ``{"text", "prompt", "split"}``
object per document; every 8th document is the held-out split that fitting never sees.

The text is the model's output (SmolLM2 is Apache-2.0); the seed prompts are written for this
project. Run from the repository root: ``python scripts/make_lens_corpus.py`` (a few minutes on
two CPU cores). The result is committed; the package never regenerates it.
"""

from __future__ import annotations

import gzip
import json
import sys
import time
from pathlib import Path

FORMS = [
    "Write a short story about {}.",
    "Explain in simple terms how {} works, with a few numbers.",
    "Write a news report about {}, with dates and figures.",
    "Give step-by-step instructions related to {}.",
    "Write a letter to a friend about {}.",
    "Describe the history of {} in a few paragraphs.",
    "Write a dialogue between two people discussing {}.",
    "List the pros and cons of {} and explain each one.",
]
TOPICS = [
    "a lighthouse keeper on a stormy night",
    "photosynthesis",
    "the Roman Empire",
    "baking sourdough bread",
    "a city council election",
    "black holes",
    "learning to play the violin",
    "the stock market",
    "a trip to Japan",
    "vaccines",
    "the French Revolution",
    "a small bakery",
    "climate change",
    "the printing press",
    "a lost dog finding its way home",
    "electric cars",
    "the human heart",
    "chess strategy",
    "a volcano eruption",
    "public libraries",
    "the moon landing",
    "honey bees",
    "a marathon runner",
    "the internet",
    "ancient Egypt",
    "saving money on a budget",
    "earthquakes",
    "a robot that learns to paint",
    "the water cycle",
    "Shakespeare's plays",
    "a football match",
    "solar panels",
    "the Silk Road",
    "a rainy day in London",
    "antibiotics",
    "the Olympic Games",
    "a family farm",
    "recycling plastic",
    "the Great Wall of China",
    "a space station",
]
CODE_PROMPTS = [
    "Write a Python function that checks whether a number is prime, and explain it.",
    "Write a Python class for a bank account with deposit and withdraw methods.",
    "Show how to read a CSV file in Python and compute the average of a column.",
    "Write a JavaScript function that reverses a string, and explain how it works.",
    "Explain what a hash table is and show a small example in Python.",
    "Write a SQL query that finds the ten customers with the highest total orders, and explain it.",
    "Write a Python script that counts the words in a text file.",
    "Explain recursion with a Python example that computes factorials.",
    "Write a bash script that backs up a directory into a dated archive.",
    "Show how to sort a list of dictionaries by a key in Python.",
    "Explain the difference between a list and a tuple in Python, with code.",
    "Write a Python function that returns the Fibonacci numbers below 1000.",
    "Write an HTML page with a form that asks for a name and an email address.",
    "Explain binary search and write it in Python.",
    "Write a Python function that converts Celsius to Fahrenheit and prints a table from 0 to 100.",
    "Explain what JSON is and show how to parse it in Python.",
]
MATH_PROMPTS = [
    "A train travels 240 kilometres in 3 hours. What is its average speed? Show your work.",
    "If a shirt costs $25 and is on sale for 20% off, what is the sale price? Explain.",
    "What is 15% of 360? Explain the steps.",
    "A rectangle is 12 metres long and 7 metres wide. What are its area and perimeter?",
    "Sarah has 3 times as many apples as Tom. Together they have 48. How many does each have?",
    "Explain how to compute compound interest on $1,000 at 5% per year for 10 years.",
    "What are the first ten prime numbers, and how do you find them?",
    "Convert 3.75 hours into hours and minutes, and explain.",
    "A recipe for 4 people needs 300 grams of flour. How much is needed for 10 people?",
    "Explain what the mean, median and mode of 2, 4, 4, 5, 7, 9 and 11 are.",
    "How many seconds are there in a week? Show the calculation.",
    "Explain the Pythagorean theorem with a triangle whose sides are 3, 4 and 5.",
]


def seed_prompts() -> list[str]:
    prompts = []
    for i, topic in enumerate(TOPICS):
        # Three forms per topic, rotating, so every form meets many topics.
        for k in range(3):
            prompts.append(FORMS[(i + 3 * k) % len(FORMS)].format(topic))
    return prompts + CODE_PROMPTS + MATH_PROMPTS


class _Tok:
    """The two things mlx-lm's batch_generate asks of a tokenizer."""

    def __init__(self, tok):
        self.tok = tok
        self.eos_token_ids = [tok.eos_token_id]

    def decode(self, ids):
        return self.tok.backend.decode(ids, skip_special_tokens=True)


def _generate(loaded, conversations, seed: int, max_tokens: int = 256, batch: int = 32) -> list[str]:
    """The model's sampled answer to each conversation (temperature 0.8, top-p 0.95, ``seed``)."""
    import mlx.core as mx
    from mlx_lm.generate import batch_generate
    from mlx_lm.sample_utils import make_sampler

    tok = loaded.tokenizer
    encoded = [tok.encode_plain(tok.render_messages(c, add_generation_prompt=True)) for c in conversations]
    mx.random.seed(seed)
    start = time.perf_counter()
    texts: list[str] = []
    for a in range(0, len(encoded), batch):
        out = batch_generate(
            loaded.model,
            _Tok(tok),
            encoded[a : a + batch],
            max_tokens=max_tokens,
            sampler=make_sampler(temp=0.8, top_p=0.95),
            completion_batch_size=batch,
            prefill_batch_size=batch,
        )
        texts.extend(t.strip() for t in out.texts)
        print(f"{len(texts)}/{len(encoded)} in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return texts


def _user(prompt: str, system: str | None = None) -> list[dict[str, str]]:
    head = [{"role": "system", "content": system}] if system else []
    return head + [{"role": "user", "content": prompt}]


def _split_every(rows: list[dict], kind: str) -> list[dict]:
    """Every 8th document of a kind is held out (stratified by kind, disjoint by document)."""
    return [{**r, "kind": kind, "split": "heldout" if i % 8 == 7 else "fit"} for i, r in enumerate(rows)]


SHUFFLE_SEED = 20261204


def version2_rows(loaded, reuse: list[dict] | None = None) -> list[dict]:
    """The documents added in version 2: chat answers, code, prose (sampled) and tool calls (built).

    ``reuse``: the version-2 rows of an earlier file, whose sampled texts are taken instead of sampling
    again (``--reuse-samples``: rebuilds the file after a change to the built documents in minutes)."""
    import random

    from corpus_v2_prompts import CODE_PROMPTS, chat_prompts, prose_prompts, tool_conversations

    chats = [_user(q, system) for system, q in chat_prompts()]
    code_prompts = CODE_PROMPTS + CODE_PROMPTS  # two samples per prompt
    if reuse is None:
        answers = _generate(loaded, chats, seed=20261204)
        code = _generate(loaded, [_user(p) for p in code_prompts], seed=20261205, max_tokens=320)
        prose = _generate(loaded, [_user(p) for p in prose_prompts()], seed=20261206)
    else:  # undo the shuffle below (it depends only on the number of rows)
        order = list(range(len(reuse)))
        random.Random(SHUFFLE_SEED).shuffle(order)
        original = [dict()] * len(reuse)
        for j, i in enumerate(order):
            original[i] = reuse[j]
        by_kind: dict[str, list[dict]] = {}
        for r in original:
            by_kind.setdefault(r["kind"], []).append(r)
        answers = [r["messages"][-1]["content"] for r in by_kind["chat"]]
        code = [r["text"] for r in by_kind["code"]]
        prose = [r["text"] for r in by_kind["prose"]]
    chat_rows = [{"messages": c + [{"role": "assistant", "content": t}]} for c, t in zip(chats, answers)]
    rows = (
        _split_every(chat_rows, "chat")
        + _split_every([{"messages": m} for m in tool_conversations()], "tools")
        + _split_every([{"text": t, "prompt": p} for p, t in zip(code_prompts, code) if t], "code")
        + _split_every([{"text": t, "prompt": p} for p, t in zip(prose_prompts(), prose) if t], "prose")
    )
    random.Random(SHUFFLE_SEED).shuffle(rows)  # any prefix of a split mixes the kinds
    return rows


def main() -> int:
    """Version 2: the version-1 documents (kind "answer") kept as they are, the new kinds added among them."""
    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root))
    sys.path.insert(0, str(root / "scripts"))
    from lazarus_report.models.loader import load_model
    from lazarus_report.models.mlx_lm_light import full_mlx_lm

    full_mlx_lm()
    loaded = load_model("smollm2-135m-instruct")
    target = root / "lazarus_report" / "lens" / "learned" / "data" / "default_corpus.jsonl.gz"
    old = [json.loads(line) for line in gzip.decompress(target.read_bytes()).decode("utf-8").splitlines() if line]
    v1 = [{**r, "kind": "answer"} for r in old if r.get("kind", "answer") == "answer"]
    reuse = [r for r in old if r.get("kind", "answer") != "answer"] if "--reuse-samples" in sys.argv else None
    new = version2_rows(loaded, reuse)
    # Interleave: the version-1 answers spread evenly through the new documents.
    rows: list[dict] = []
    step = len(new) / max(1, len(v1))
    for i, r in enumerate(v1):
        rows.extend(new[int(i * step) : int((i + 1) * step)])
        rows.append(r)
    rows.extend(new[int(len(v1) * step) :])
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")
    target.write_bytes(gzip.compress(data, compresslevel=9, mtime=0))
    print(f"wrote {target}: {len(rows)} documents, {len(data)} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
