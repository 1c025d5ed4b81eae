"""The ``lazarus`` command: one module per command group (``introspect``, ``report``, ``lens``), shared options
and the error guard in ``common``, the entry point in ``main``. A thin layer over ``commands``.
"""
