"""st-local: the embedded local-directory backend for stcore."""

__version__ = "0.1.0"
