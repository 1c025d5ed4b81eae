"""Lenses shipped with the package (data only): ``<model>-<kind>.safetensors`` and ``.json`` per embedded
model and lens kind, read by ``lazarus_report.lens.learned.shipped``; ``scripts/fit_shipped_lenses.py``
reproduces them."""
