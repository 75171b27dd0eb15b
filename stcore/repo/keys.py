"""Keys: a random master key, wrapped under password-derived keys in ``keys/<id>``; list, add,
remove and change them (``stcore key``).

The master key is 64 random bytes: 32 for the encryptor, 32 for keyed BLAKE3 blob ids. Each
``keys/<id>`` object holds it encrypted (AES-256-GCM) under a key derived from one password with
Argon2id, whose parameters and salt are stored beside it, so parameters can be raised for new keys
without touching old ones. Several keys open one repository; changing a password adds a key and
removes the old one. Key objects are never modified, only created and deleted.

cryptography is imported by the functions that use it: its OpenSSL bindings cost about 9 MiB of
memory, which a process using only unencrypted repositories never needs.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from stcore.errors import CorruptObjectError, ObjectNotFoundError, PasswordError, RepositoryError
from stcore.interfaces import Backend
from stcore.models import default_host
from stcore.repo.format import is_checked, open_checked, seal_checked

MASTER_KEY_SIZE = 64
KEY_PREFIX = "keys/"
#: no key object is larger than this; a larger one is damage
MAX_KEY_BYTES = 64 * 1024


#: A password, or something that produces one only when it is needed (a prompt, a command).
PasswordSource = str | Callable[[], str | None] | None


@attrs.frozen(kw_only=True)
class KdfParams:
    """Argon2id cost, stored with each key so it can be raised for new keys at any time.

    The default is OWASP's first recommended Argon2id setting (46 MiB, one pass, one lane): about
    50 ms here, paid once per command, where 64 MiB x 3 passes cost 200 ms, a tenth of a whole
    first backup of the 1 GiB benchmark set, for no gain against an attacker that the memory cost
    does not already bring.
    """

    memory_kib: int = 46 * 1024
    iterations: int = 1
    lanes: int = 1

    def validate(self) -> None:
        """Refuse costs no honest key has: a hostile key must not make us allocate 1 TiB."""
        for field, value, low, high in (
            ("memory_kib", self.memory_kib, 8, 4 * 1024 * 1024),
            ("iterations", self.iterations, 1, 64),
            ("lanes", self.lanes, 1, 64),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise ValueError(f"{field} {value!r} is outside {low}..{high}")

    def derive(self, password: str, salt: bytes) -> bytes:
        from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

        return Argon2id(
            salt=salt,
            length=32,
            iterations=self.iterations,
            lanes=self.lanes,
            memory_cost=self.memory_kib,
        ).derive(password.encode())


@attrs.frozen(kw_only=True)
class MasterKey:
    encryption: bytes
    ids: bytes

    @classmethod
    def generate(cls) -> MasterKey:
        raw = secrets.token_bytes(MASTER_KEY_SIZE)
        return cls(encryption=raw[:32], ids=raw[32:])

    def raw(self) -> bytes:
        return self.encryption + self.ids

    def derive(self, purpose: str) -> bytes:
        """A 32-byte key for one local use (``files cache``, ``catalog``): HKDF-SHA256 of the
        master key with ``stcore-local:<purpose>`` as info, so no use can learn another's key
        or the master key, and a cache on this machine needs no key of its own."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        return HKDF(
            algorithm=hashes.SHA256(),
            length=32,
            salt=None,
            info=b"stcore-local:" + purpose.encode(),
        ).derive(self.raw())


def _associated(key_id: str) -> bytes:
    return b"stcore-master-key:" + key_id.encode()


def wrap(master: MasterKey, password: str, kdf: KdfParams, key_id: str) -> bytes:
    """The JSON of a ``keys/<key_id>`` object."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    salt = secrets.token_bytes(16)
    nonce = secrets.token_bytes(12)
    sealed = AESGCM(kdf.derive(password, salt)).encrypt(nonce, master.raw(), _associated(key_id))
    document = {
        "version": 1,
        "created": dt.datetime.now(dt.UTC).isoformat(),
        "host": default_host(),
        "kdf": {"name": "argon2id", **attrs.asdict(kdf), "salt": base64.b64encode(salt).decode()},
        "wrap": "aes-256-gcm",
        "data": base64.b64encode(nonce + sealed).decode(),
    }
    return json.dumps(document, indent=2, sort_keys=True).encode() + b"\n"


def unwrap(raw: bytes, password: str, key_id: str, *, checked: bool = False) -> MasterKey | None:
    """The master key if ``password`` opens this key object, else None; CorruptObjectError if
    the object is damaged (so one damaged key never locks out the others)."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    name = KEY_PREFIX + key_id
    try:
        if len(raw) > MAX_KEY_BYTES:
            raise ValueError(f"{len(raw)} bytes is too large for a key")
        if checked or is_checked(raw):
            raw = open_checked(name, raw)
        document = json.loads(raw)
        kdf_doc = dict(document["kdf"])
        if kdf_doc.pop("name") != "argon2id" or document.get("wrap") != "aes-256-gcm":
            raise ValueError("unknown key derivation or wrapping")
        salt = base64.b64decode(kdf_doc.pop("salt"), validate=True)
        kdf = KdfParams(**kdf_doc)
        kdf.validate()
        blob = base64.b64decode(document["data"], validate=True)
        derived = kdf.derive(password, salt)
    except (ValueError, KeyError, TypeError, OverflowError, CorruptObjectError) as exc:
        raise CorruptObjectError(f"key {key_id} cannot be used: {str(exc)[:200]}") from exc
    try:
        raw_master = AESGCM(derived).decrypt(blob[:12], blob[12:], _associated(key_id))
    except (InvalidTag, ValueError):
        return None
    if len(raw_master) != MASTER_KEY_SIZE:
        raise CorruptObjectError(f"key {key_id} holds a master key of the wrong size")
    return MasterKey(encryption=raw_master[:32], ids=raw_master[32:])


def resolve_password(source: PasswordSource, location: str) -> str:
    """The password: ``source`` itself, or what it returns if callable."""
    if callable(source):
        source = source()
    if source is None:
        raise PasswordError(
            f"{location} is encrypted and no password was given: set STCORE_PASSWORD, or use "
            "--password-file or --password-command"
        )
    return source


def key_ids(backend: Backend) -> list[str]:
    return sorted(info.key[len(KEY_PREFIX) :] for info in backend.list(KEY_PREFIX))


def open_master_key(
    backend: Backend, password: PasswordSource, *, checked: bool = False
) -> tuple[MasterKey, str]:
    """The master key and the id of the key object the password opened."""
    ids = key_ids(backend)
    if not ids:
        raise RepositoryError(f"{backend.location} is encrypted but has no keys/ objects")
    secret = resolve_password(password, backend.location)
    damaged: list[str] = []
    for key_id in ids:
        try:
            raw = backend.read(KEY_PREFIX + key_id, 0, MAX_KEY_BYTES + 1)
        except ObjectNotFoundError:
            continue  # removed while we looked
        try:
            master = unwrap(raw, secret, key_id, checked=checked)
        except CorruptObjectError:
            damaged.append(key_id)  # one damaged key must not lock out the others
            continue
        if master is not None:
            return master, key_id
    message = f"wrong password: none of the {len(ids)} keys of {backend.location} opens"
    if damaged:
        message += f" (damaged, skipped: {', '.join(damaged)})"
    raise PasswordError(message)


def require_usable_password(password: str) -> str:
    if not password:
        raise PasswordError("an empty password cannot protect a repository; choose another")
    return password


def add_key(
    backend: Backend,
    master: MasterKey,
    password: str,
    kdf: KdfParams | None = None,
    *,
    checked: bool = True,
) -> str:
    """Write a new key object for ``password``; ``checked`` (format 2) adds its checksum."""
    require_usable_password(password)
    key_id = secrets.token_hex(8)
    wrapped = wrap(master, password, kdf or KdfParams(), key_id)
    name = KEY_PREFIX + key_id
    backend.write(name, seal_checked(name, wrapped) if checked else wrapped)
    return key_id


@attrs.frozen(kw_only=True)
class KeyInfo:
    """One ``keys/<id>`` object as ``stcore key list`` shows it (never its secret parts)."""

    id: str
    created: str | None
    host: str | None
    #: the key derivation's name and cost (the salt left out)
    kdf: Mapping[str, Any]
    #: whether this is the key the repository was opened with
    current: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "created": self.created,
            "host": self.host,
            "kdf": dict(self.kdf),
            "current": self.current,
        }


def describe_keys(backend: Backend, current: str | None = None) -> list[KeyInfo]:
    """Every readable key object; ``current`` marks the one in use."""
    described = []
    for key_id in key_ids(backend):
        name = KEY_PREFIX + key_id
        try:
            raw = backend.read(name, 0, MAX_KEY_BYTES + 1)
            document = json.loads(open_checked(name, raw) if is_checked(raw) else raw)
        except (ObjectNotFoundError, CorruptObjectError, ValueError, RecursionError):
            continue
        if not isinstance(document, dict):
            continue
        kdf = document.get("kdf")
        described.append(
            KeyInfo(
                id=key_id,
                created=_text(document.get("created")),
                host=_text(document.get("host")),
                kdf={k: v for k, v in kdf.items() if k != "salt"} if isinstance(kdf, dict) else {},
                current=key_id == current,
            )
        )
    return described


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def remove_key(backend: Backend, key_id: str) -> None:
    ids = key_ids(backend)
    if key_id not in ids:
        raise RepositoryError(f"no key {key_id!r} in {backend.location} (keys: {', '.join(ids)})")
    if len(ids) == 1:
        raise RepositoryError(
            "refusing to remove the last key: the repository could never be opened again"
        )
    backend.delete(KEY_PREFIX + key_id)
