"""The ``none`` encryptor: the encryption hook's identity implementation.

A repository always names an encryptor in its config, so adding encryption later (as a plugin)
needs no format change: the frames and associated data are already in place.
"""

from __future__ import annotations


class NoEncryptor:
    name = "none"
    overhead = 0

    def encrypt(self, plaintext: bytes, associated_data: bytes) -> bytes:
        return plaintext

    def decrypt(self, ciphertext: bytes, associated_data: bytes) -> bytes:
        return ciphertext


def make_none(key: bytes | None = None) -> NoEncryptor:
    return NoEncryptor()
