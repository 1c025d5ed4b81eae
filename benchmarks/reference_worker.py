"""The transformers/PyTorch reference for `make bench`, run in the test environment (it has torch).

Loads the same GGUF through transformers (dequantized to float32), then answers commands on stdin,
one per line, so the benchmark can interleave reference and lazarus runs side by side:

    grid N      full logit-lens grid over all layers x N positions (top-5, entropy, KL to final)
    last N      last-position lens over all layers
    quit

Each answer is one JSON line: {"seconds": ...}.
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    import torch
    from transformers import AutoModelForCausalLM

    gguf_path = sys.argv[1]
    torch.set_num_threads(os.cpu_count() or 1)
    model = AutoModelForCausalLM.from_pretrained(
        os.path.dirname(gguf_path), gguf_file=os.path.basename(gguf_path), dtype=torch.float32
    )
    model.eval()
    norm, head = model.model.norm, model.lm_head
    base_ids = [504, 3575, 282, 4649, 314]

    def hidden_states(n: int):
        ids = torch.tensor([(base_ids * (n // len(base_ids) + 1))[:n]])
        out = model.model(ids, output_hidden_states=True)
        # hidden_states[i + 1] is block i's output; the last entry is already normed in transformers.
        hs = list(out.hidden_states[1:])
        return hs

    @torch.inference_mode()
    def grid(n: int) -> None:
        hs = hidden_states(n)
        final = torch.log_softmax(head(hs[-1][0]).float(), dim=-1)  # [T, V] (already normed)
        p_final = final.exp()
        for i, h in enumerate(hs):
            x = h[0] if i == len(hs) - 1 else norm(h[0])
            logp = torch.log_softmax(head(x).float(), dim=-1)
            p = logp.exp()
            torch.topk(logp, 5, dim=-1)
            (-(p * logp).sum(-1)).tolist()
            ((p_final * (final - logp)).sum(-1)).tolist()

    @torch.inference_mode()
    def last(n: int) -> None:
        hs = hidden_states(n)
        x = torch.stack([h[0, -1] for h in hs[:-1]] + [hs[-1][0, -1]])
        xs = torch.cat([norm(x[:-1]), x[-1:]])
        logp = torch.log_softmax(head(xs).float(), dim=-1)
        torch.topk(logp, 5, dim=-1)

    jobs = {"grid": grid, "last": last}
    print(json.dumps({"ready": True, "torch": torch.__version__}), flush=True)
    for line in sys.stdin:
        cmd, *rest = line.split()
        if cmd == "quit":
            break
        n = int(rest[0])
        t = time.perf_counter()
        jobs[cmd](n)
        print(json.dumps({"seconds": time.perf_counter() - t}), flush=True)


if __name__ == "__main__":
    main()
