"""Two runs side by side: per-layer divergences (``layers``), where they part at every position
(``change_map``), and which layers carry the change (``attribution``).
"""
