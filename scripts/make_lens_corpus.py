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


def main() -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from lazarus_report.models.loader import load_model
    from lazarus_report.models.mlx_lm_light import full_mlx_lm

    full_mlx_lm()
    import mlx.core as mx
    from mlx_lm.generate import batch_generate
    from mlx_lm.sample_utils import make_sampler

    loaded = load_model("smollm2-135m-instruct")
    tok = loaded.tokenizer
    prompts = seed_prompts()
    encoded = [tok.encode_plain(tok.apply_chat_template(p)) for p in prompts]
    mx.random.seed(20261127)
    start = time.perf_counter()
    texts: list[str] = []
    batch = 24
    for a in range(0, len(encoded), batch):
        out = batch_generate(
            loaded.model,
            _Tok(tok),
            encoded[a : a + batch],
            max_tokens=256,
            sampler=make_sampler(temp=0.8, top_p=0.95),
            completion_batch_size=batch,
            prefill_batch_size=batch,
        )
        texts.extend(out.texts)
        print(f"{len(texts)}/{len(prompts)} in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    target = Path(__file__).resolve().parents[1] / "lazarus_report" / "lenses" / "data" / "default_corpus.jsonl.gz"
    lines = []
    for i, (p, t) in enumerate(zip(prompts, texts)):
        lines.append(json.dumps({"text": t.strip(), "prompt": p, "split": "heldout" if i % 8 == 7 else "fit"}))
    data = ("\n".join(lines) + "\n").encode("utf-8")
    target.write_bytes(gzip.compress(data, compresslevel=9, mtime=0))
    n_tokens = sum(len(tok.encode_plain(t)) for t in texts)
    print(f"wrote {target}: {len(texts)} documents, {n_tokens} tokens, {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
