"""The Python API's orchestration, above the engine: loaded-model handles (``analyzer.ModelAnalyzer``),
comparing two models (``compare.compare_models``), running a suite (``suite.run_suite``).
"""
