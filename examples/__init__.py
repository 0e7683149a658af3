"""The examples: each script runs on its own (``python examples/<name>.py``); ``python -m
examples`` runs them all."""
