"""Reading hidden states through a lens: the logit-lens readout (``readout``), divergences (``stats``) and
learned lenses (``learned``: linear and tuned, fitted on CPU).
"""
