"""Run under ``mlx.launch`` by tests/test_distributed.py: analyses of several models, each sharded over the ranks.

Usage: ``distributed_worker.py OUT_DIR JOBS_JSON``; JOBS_JSON is a list of
``{"name", "model", "mode", "prompt", "track", "adapter"}``. Each job loads its model with
``distributed.enable(mode)`` and analyzes the prompt through the public API (every layer, with the grid);
rank 0 writes ``OUT_DIR/<name>.json`` (the result, or ``{"error": message}``), the other ranks nothing.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from lazarus_report.commands.analyzer import ModelAnalyzer
from lazarus_report.core.config import AnalysisConfig, LayerStrategy
from lazarus_report.core.errors import LazarusError
from lazarus_report.models import distributed


def main() -> None:
    out_dir = Path(sys.argv[1])
    jobs = json.loads(sys.argv[2])
    for job in jobs:
        distributed.enable(job["mode"])
        config = AnalysisConfig(
            layer_strategy=LayerStrategy.ALL,
            top_k=5,
            track_tokens=job.get("track", []),
            use_chat_template=False,
            compute_grid=True,
        )
        try:
            result = ModelAnalyzer.load(job["model"], adapter=job.get("adapter")).run(job["prompt"], config)
            text = result.to_json()
        except LazarusError as exc:  # the same on every rank: the ranks stay in step
            text = json.dumps({"error": str(exc)})
        if distributed.is_output_rank():
            (out_dir / f"{job['name']}.json").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
