"""The ``pose-pipeline`` command (``main``): one module per group of subcommands, and what they share."""

from .main import main

__all__ = ["main"]
