"""Results as plain data with a versioned JSON form: one module per family (``analysis``, ``comparison``,
``suite``, ``lens_eval``), what produced them (``provenance``), the shared codec (``codec``) and reading any
of them back (``loading``). No MLX, no numpy, no rendering: renderers build on this alone.
"""
