"""Prompt suites: a file of cases with expectations, run on one model or two (base vs tuned).

``spec`` reads and validates suite files (YAML or JSONL, described by ``schemas/suite.schema.json``),
``checks`` evaluates expectations on results, ``runner`` runs a suite (loading each model once),
``junit`` writes JUnit XML. Only ``runner`` touches MLX.
"""
