"""One tool of the `peers` section in its own process: `python peers_worker.py TOOL MODEL`.

TOOL is `ours` (run by the product's python: lazarus_report on the GGUF), `tl` (TransformerLens's
`TransformerBridge.boot_transformers` on the Hugging Face folder) or `tuned` (tuned-lens's `PredictionTrajectory`
with its logit lens on the same folder); the peers run in the peers' own environment. Every tool reads the same
token ids (no BOS added). The worker loads the model, prints one JSON line, then answers one line of JSON per
request line on stdin:

    check                 -> final p of the top token, top-1 per layer at the last position (5 tokens), and the
                             grid's top-1 at every (layer, position) of 64 tokens
    last N | grid N       -> {"seconds": s}: the last-position lens over every layer / the layers x positions grid
                             (top-1, entropy, KL to the final layer) on N tokens, timed in this process
    quit

`python peers_worker.py TOOL MODEL --once PROMPT` is the end-to-end job (a fresh process from the shell:
imports, load, tokenize the prompt, the last-position lens over every layer, print the top token).
"""

from __future__ import annotations

import json
import sys
import time

BASE_IDS = [504, 3575, 282, 4649, 314]  # "The capital of France is" in SmolLM2's vocabulary


def ids_of(n: int) -> list[int]:
    return (BASE_IDS * (n // len(BASE_IDS) + 1))[:n]


class Ours:
    """lazarus_report: the engine's last-position pass and the lens grid (what `analyze` runs)."""

    def __init__(self, model: str):
        from lazarus_report.commands.analyzer import ModelAnalyzer

        self.analyzer = ModelAnalyzer.load(model)
        self.parts = self.analyzer.loaded.parts
        self.layers = list(range(len(self.parts.layers)))

    def last(self, ids: list[int]) -> tuple[list[int], float]:
        from lazarus_report.core.config import AnalysisConfig, LayerStrategy
        from lazarus_report.engine import run as engine
        from lazarus_report.engine.prompt import PreparedPrompt

        config = AnalysisConfig(layer_strategy=LayerStrategy.ALL, top_k=1, compute_grid=False)
        run = engine.analyze(self.analyzer.loaded, "", config, prepared=PreparedPrompt("", False, ids))
        top = [p.top_tokens[0] for p in run.result.layer_predictions]
        return [t.token_id for t in top], float(top[-1].prob)

    def grid(self, ids: list[int]) -> list[list[int]]:
        from lazarus_report.lens import readout as lens
        from lazarus_report.models.hooks import capture_hidden

        sink = capture_hidden(self.parts, ids, self.layers)
        g = lens.position_grid(self.parts, [sink[i][0] for i in self.layers], sink[self.layers[-1]][0], top_k=1)
        return g.top_ids

    def tokenize(self, prompt: str) -> list[int]:
        return list(self.analyzer.loaded.tokenizer.encode(prompt))


class TransformerLens:
    """TransformerLens 4.x: the bridge over the Hugging Face model, `run_with_cache` keeping only the residual
    stream after each block, then `ln_final` and `unembed` (the logit lens as TransformerLens users write it)."""

    def __init__(self, model: str):
        import torch
        from transformer_lens.model_bridge import TransformerBridge

        self.torch = torch
        self.bridge = TransformerBridge.boot_transformers(model, device="cpu", dtype=torch.float32)
        self.n = self.bridge.cfg.n_layers

    def _logits(self, ids: list[int], last_only: bool):
        torch = self.torch
        with torch.no_grad():
            x = torch.tensor([ids])
            _, cache = self.bridge.run_with_cache(x, names_filter=lambda n: n.endswith("hook_resid_post"))
            stack = torch.stack([cache[f"blocks.{i}.hook_resid_post"][0] for i in range(self.n)])
            if last_only:
                stack = stack[:, -1:]
            return self.bridge.unembed(self.bridge.ln_final(stack))  # [L, T, V]

    def last(self, ids: list[int]) -> tuple[list[int], float]:
        z = self._logits(ids, last_only=True)[:, 0]
        p = z.softmax(-1)
        top = p.argmax(-1)
        return top.tolist(), float(p[-1, top[-1]])

    def grid(self, ids: list[int]) -> list[list[int]]:
        torch = self.torch
        with torch.no_grad():
            logp = self._logits(ids, last_only=False).log_softmax(-1)
            p = logp.exp()
            entropy = -(p * logp).sum(-1)  # noqa: F841 (computed: part of the job)
            final = logp[-1:]
            kl = (final.exp() * (final - logp)).sum(-1)  # noqa: F841
            return logp.argmax(-1).tolist()

    def tokenize(self, prompt: str) -> list[int]:
        return self.bridge.to_tokens(prompt, prepend_bos=False)[0].tolist()


class TunedLens:
    """tuned-lens 0.2: `PredictionTrajectory.from_lens_and_model` with `LogitLens.from_model`; its rows are the
    embeddings, blocks 0..L-2 through the lens, and the model's own output (block L-1): rows 1.. are our layers."""

    def __init__(self, model: str):
        import torch
        from transformers import AutoModelForCausalLM
        from tuned_lens import model_surgery
        from tuned_lens.nn.lenses import LogitLens

        # tuned-lens 0.2 checks for TransformerLens's HookedTransformer, which TransformerLens 4 (installed beside
        # it in the peers' environment) removed: the check raises. This model is a Hugging Face one either way.
        model_surgery._transformer_lens_available = False
        self.model = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).eval()
        self.lens = LogitLens.from_model(self.model)

    def _trajectory(self, ids: list[int]):
        from tuned_lens.plotting import PredictionTrajectory

        return PredictionTrajectory.from_lens_and_model(self.lens, self.model, ids)

    def last(self, ids: list[int]) -> tuple[list[int], float]:
        import numpy as np

        t = self._trajectory(ids)
        lp = t.log_probs[1:, -1]  # [L, V]
        top = lp.argmax(-1)
        return top.tolist(), float(np.exp(lp[-1, top[-1]]))

    def grid(self, ids: list[int]) -> list[list[int]]:
        t = self._trajectory(ids)
        t.entropy()
        t.forward_kl()
        return t.log_probs[1:].argmax(-1).tolist()

    def tokenize(self, prompt: str) -> list[int]:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self.model.name_or_path)(prompt, add_special_tokens=False)["input_ids"]


TOOLS = {"ours": Ours, "tl": TransformerLens, "tuned": TunedLens}


def main() -> None:
    tool, model = sys.argv[1], sys.argv[2]
    if sys.argv[3:4] == ["--once"]:
        t = TOOLS[tool](model)
        top, p = t.last(t.tokenize(sys.argv[4]))
        print(json.dumps({"top": top[-1], "p": p}))
        return
    start = time.perf_counter()
    t = TOOLS[tool](model)
    print(json.dumps({"tool": tool, "load_seconds": time.perf_counter() - start}), flush=True)
    for line in sys.stdin:
        job, _, n = line.strip().partition(" ")
        if job == "quit":
            break
        if job == "check":
            top, p = t.last(ids_of(5))
            out: dict = {"top1_layers": top, "final_p": p, "grid_top1": t.grid(ids_of(64))}
        else:
            fn = t.last if job == "last" else t.grid
            s = time.perf_counter()
            fn(ids_of(int(n)))
            out = {"seconds": time.perf_counter() - s}
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
