"""The bottom layer: errors, the configuration types and their validators, atomic output files, the
verified disk cache, runtime facts (BLAS preload, MLX import, versions).

Standard library only at import time; nothing here imports another part of the package.
"""
