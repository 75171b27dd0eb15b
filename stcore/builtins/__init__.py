"""The built-in sources, compressors and ``none`` encryptor, registered like any plugin."""

from stcore.builtins import plugin

__all__ = ["plugin"]
