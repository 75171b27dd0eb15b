"""Client-side encryption: AES-256-GCM (the default) and ChaCha20-Poly1305, from ``cryptography``.

A sealed frame is ``nonce (12 bytes) || ciphertext || tag (16 bytes)``. Nonces are 96 random bits
per frame: with at most ~2^32 frames under one key the chance of any repeat stays below 2^-32
(birthday bound), and a repository of 16 MiB packs holding ~1 MiB blobs reaches 2^32 frames only
at ~4 PiB. Associated data (the object's kind and id) is authenticated, not stored.
"""

from __future__ import annotations

import os
from typing import Protocol

from stcore.errors import ConfigError, CorruptObjectError

NONCE_SIZE = 12
TAG_SIZE = 16
KEY_SIZE = 32


class _Aead(Protocol):
    def encrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes: ...

    def decrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes: ...


class AeadEncryptor:
    """An AEAD cipher sealing every frame under a fresh random nonce."""

    name = ""
    overhead = NONCE_SIZE + TAG_SIZE

    def __init__(self, key: bytes | None, *, nonce_source: object = None) -> None:
        if key is None or len(key) != KEY_SIZE:
            raise ConfigError(f"the {self.name} encryptor needs a {KEY_SIZE}-byte key")
        self._aead = self._make(key)
        # Only known-answer tests pass a nonce source; everything else gets os.urandom.
        self._nonce = nonce_source if callable(nonce_source) else os.urandom

    def _make(self, key: bytes) -> _Aead:
        raise NotImplementedError

    def encrypt(self, plaintext: bytes, associated_data: bytes) -> bytes:
        nonce = self._nonce(NONCE_SIZE)
        return bytes(nonce) + self._aead.encrypt(nonce, bytes(plaintext), associated_data)

    def decrypt(self, ciphertext: bytes, associated_data: bytes) -> bytes:
        if len(ciphertext) < self.overhead:
            raise CorruptObjectError("encrypted frame is shorter than its nonce and tag")
        from cryptography.exceptions import InvalidTag  # loaded with the cipher, see _make

        try:
            return self._aead.decrypt(
                bytes(ciphertext[:NONCE_SIZE]), bytes(ciphertext[NONCE_SIZE:]), associated_data
            )
        except InvalidTag:
            raise CorruptObjectError(
                "authentication failed: the data was changed, moved, or encrypted with another key"
            ) from None


class AesGcmEncryptor(AeadEncryptor):
    name = "aes-256-gcm"

    def _make(self, key: bytes) -> _Aead:
        # imported here: cryptography's OpenSSL bindings cost 9 MiB that an unencrypted
        # repository never needs
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        return AESGCM(key)


class ChaChaEncryptor(AeadEncryptor):
    name = "chacha20-poly1305"

    def _make(self, key: bytes) -> _Aead:
        from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

        return ChaCha20Poly1305(key)
