"""Registers stcore's built-ins through the same hooks third-party plugins implement."""

from __future__ import annotations

from typing import Any

from stcore.hookspecs import hookimpl
from stcore.registry import Registration


def _attr(module: str, name: str) -> Any:
    def load() -> Any:
        import importlib

        return getattr(importlib.import_module(module), name)

    return load


@hookimpl
def st_register_sources() -> list[Registration]:
    module = "stcore.builtins.sources"
    return [
        Registration(
            name="files", load=_attr(module, "FilesSource"), summary="a directory tree or file"
        ),
        Registration(
            name="json", load=_attr(module, "JsonSource"), summary="JSON / JSON-lines documents"
        ),
        Registration(
            name="sqlite",
            load=_attr(module, "SqliteSource"),
            summary="a live SQLite database (online backup API)",
        ),
        Registration(
            name="stdin",
            load=_attr(module, "StdinSource"),
            summary="standard input as one file, streamed (stcore backup --stdin)",
        ),
    ]


@hookimpl
def st_register_compressors() -> list[Registration]:
    module = "stcore.builtins.compressors"
    return [
        Registration(name="zstd", load=_attr(module, "ZstdCompressor"), summary="zstd (default)"),
        Registration(name="gzip", load=_attr(module, "GzipCompressor"), summary="DEFLATE"),
        Registration(name="lzma", load=_attr(module, "LzmaCompressor"), summary="LZMA / xz"),
        Registration(name="none", load=_attr(module, "make_none"), summary="store as is"),
    ]


@hookimpl
def st_register_encryptors() -> list[Registration]:
    crypto = "stcore.builtins.crypto"
    return [
        Registration(
            name="none",
            load=_attr("stcore.builtins.encryptors", "make_none"),
            summary="no encryption (the default)",
        ),
        Registration(
            name="aes-256-gcm",
            load=_attr(crypto, "AesGcmEncryptor"),
            summary="AES-256-GCM (the default with --encrypt)",
        ),
        Registration(
            name="chacha20-poly1305",
            load=_attr(crypto, "ChaChaEncryptor"),
            summary="ChaCha20-Poly1305 (fast without AES hardware)",
        ),
    ]


@hookimpl
def st_register_backends() -> list[Registration]:
    return []
