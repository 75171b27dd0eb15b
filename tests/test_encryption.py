"""Client-side encryption: what a repository holds, what it refuses, and format v1's vectors.

* both AEAD encryptors pass the plugin contract kit;
* an encrypted repository holds no plaintext: no marker string, no unkeyed content hash, no file
  or directory name, no master key, in any object (keys/ and config included);
* a wrong or missing password fails in one line and writes nothing;
* a flipped bit anywhere (data blob, pack trailer, index, tree, manifest) or two swapped packs are
  caught on read and by ``check --read-data``, naming the damaged object;
* keys: add, open with either, change a password, remove, refuse to remove the last;
* known-answer vectors freeze the envelope format.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import blake3
import pytest

import stcore
from stcore.builtins.compressors import NoCompressor
from stcore.builtins.crypto import AesGcmEncryptor, ChaChaEncryptor
from stcore.errors import ConfigError, CorruptObjectError, PasswordError
from stcore.interfaces import Encryptor
from stcore.repo.format import PACK_FOOTER, Codec, object_key, open_checked
from stcore.repository import Repository
from stcore.sources import make_source
from stcore.testing import EncryptorContract
from tests.conftest import run_cli
from tests.helpers import (
    PASSWORD,
    init_encrypted,
    open_encrypted,
)
from tests.trees import make_sample_tree, snapshot_of_tree

#: Argon2id cheap enough for a test suite (the default costs 64 MiB per derivation).

MARKERS = [
    b"MARKER-ALPHA-7f3c9e1d",
    b"MARKER-BRAVO-2b8a6c4f",
    b"MARKER-CHARLIE-json-key-91d2",
    b"MARKER-DELTA-json-value-5e07",
    b"MARKER-ECHO-big-0c6b",
]
DISTINCTIVE_DIR = "src-dir-qzv8w3kp"
DISTINCTIVE_FILE = "notes-filename-xj4r9tmb.txt"


def files_under(root: Path) -> dict[str, bytes]:
    """Every regular file below ``root`` (hidden ones too), by relative path."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def flip(path: Path, offset: int, mask: int = 0x01) -> None:
    body = bytearray(path.read_bytes())
    body[offset] ^= mask
    path.write_bytes(bytes(body))


# --- 1. the contract kit -------------------------------------------------------------------------


class TestAesGcmContract(EncryptorContract):
    @pytest.fixture
    def encryptor(self) -> Encryptor:
        return AesGcmEncryptor(os.urandom(32))


class TestChaChaContract(EncryptorContract):
    @pytest.fixture
    def encryptor(self) -> Encryptor:
        return ChaChaEncryptor(os.urandom(32))


@pytest.mark.parametrize("cls", [AesGcmEncryptor, ChaChaEncryptor])
def test_every_frame_gets_a_fresh_nonce(cls: type[AesGcmEncryptor]) -> None:
    encryptor = cls(os.urandom(32))
    first, second = (encryptor.encrypt(b"same", b"aad") for _ in range(2))
    assert first[:12] != second[:12] and first != second
    assert encryptor.decrypt(first, b"aad") == encryptor.decrypt(second, b"aad") == b"same"


@pytest.mark.parametrize("cls", [AesGcmEncryptor, ChaChaEncryptor])
@pytest.mark.parametrize("key", [None, b"", bytes(16), bytes(31), bytes(33)])
def test_a_key_of_the_wrong_size_is_refused(cls: type[AesGcmEncryptor], key: bytes | None) -> None:
    with pytest.raises(ConfigError, match="32-byte key"):
        cls(key)


@pytest.mark.parametrize("cls", [AesGcmEncryptor, ChaChaEncryptor])
def test_another_key_and_short_frames_are_refused(cls: type[AesGcmEncryptor]) -> None:
    sealed = cls(os.urandom(32)).encrypt(b"payload", b"aad")
    with pytest.raises(CorruptObjectError, match="authentication failed"):
        cls(os.urandom(32)).decrypt(sealed, b"aad")
    with pytest.raises(CorruptObjectError, match="shorter"):
        cls(os.urandom(32)).decrypt(sealed[:27], b"aad")


# --- 2. no plaintext in the repository -----------------------------------------------------------


def make_marked_tree(root: Path) -> tuple[Path, Path]:
    """A source directory full of markers, and a JSON document with a marker key."""
    source = root / DISTINCTIVE_DIR
    (source / "sub").mkdir(parents=True)
    (source / DISTINCTIVE_FILE).write_bytes(b"some notes " + MARKERS[0] + b" end of notes\n")
    (source / "sub" / "mixed.bin").write_bytes(os.urandom(50_000) + MARKERS[1] + os.urandom(50_000))
    # Only the marker, repeated, and below the chunker's minimum size: exactly one chunk, so
    # its unkeyed BLAKE3 would be the blob id of an unencrypted repository.
    repeats = 200_000 // len(MARKERS[4])
    (source / "marker-only.bin").write_bytes(MARKERS[4] * repeats)
    document = {MARKERS[2].decode(): MARKERS[3].decode(), "n": list(range(20))}
    (source / "doc.json").write_text(json.dumps(document))
    json_doc = root / "standalone.json"
    json_doc.write_text(json.dumps({MARKERS[2].decode(): [MARKERS[3].decode()] * 3}))
    return source, json_doc


def backup_marked(repo: Repository, root: Path) -> tuple[Path, Path]:
    source, json_doc = make_marked_tree(root)
    sources = [
        *stcore.sources_for_paths([str(source)]),
        make_source("jsondoc", "json", {"path": str(json_doc)}),
    ]
    result = repo.backup(sources)
    assert result.errors == ()
    return source, json_doc


def forbidden_needles(source: Path, json_doc: Path) -> dict[str, bytes]:
    """What must not appear in an encrypted repository, each with a label for the message."""
    needles: dict[str, bytes] = {}
    for marker in MARKERS:
        needles[f"marker {marker.decode()}"] = marker
    contents = {str(p): p.read_bytes() for p in [*source.rglob("*"), json_doc] if p.is_file()}
    for name, data in contents.items():
        digest = blake3.blake3(data).digest()
        needles[f"BLAKE3 of {name} (raw)"] = digest
        needles[f"BLAKE3 of {name} (hex)"] = digest.hex().encode()
    for marker in MARKERS:
        digest = blake3.blake3(marker).digest()
        needles[f"BLAKE3 of {marker.decode()}"] = digest
        needles[f"BLAKE3 of {marker.decode()} (hex)"] = digest.hex().encode()
    for name in (DISTINCTIVE_DIR, DISTINCTIVE_FILE, "marker-only.bin", "standalone.json"):
        needles[f"name {name}"] = name.encode()
    needles["source path"] = str(source).encode()
    return needles


def leaks(objects: dict[str, bytes], needles: dict[str, bytes]) -> list[str]:
    return [
        f"{label} in {key}"
        for key, body in objects.items()
        for label, needle in needles.items()
        if needle in body
    ]


def test_the_leak_scanner_finds_plaintext_in_an_unencrypted_repository(tmp_path: Path) -> None:
    """Control: the same scan on an unencrypted repository does find things.

    Uncompressed, so the ids in the index appear byte for byte: with zstd a random id can be
    split by a chance 3-byte match and the control would fail for reasons unrelated to the scan.
    """
    repo = stcore.init_repository(str(tmp_path / "repo"), compression="none")
    source, json_doc = backup_marked(repo, tmp_path)
    found = leaks(files_under(tmp_path / "repo"), forbidden_needles(source, json_doc))
    text = "\n".join(found)
    for marker in MARKERS[:3]:
        assert f"marker {marker.decode()} in data/" in text, text
    # The unkeyed hash of the marker-only file is its blob id, in the index and the pack trailer.
    assert any("marker-only.bin (raw) in index/" in f for f in found), text


@pytest.mark.parametrize("cipher", ["aes-256-gcm", "chacha20-poly1305"])
def test_an_encrypted_repository_holds_no_plaintext(tmp_path: Path, cipher: str) -> None:
    repo = init_encrypted(tmp_path / "repo", cipher)
    source, json_doc = backup_marked(repo, tmp_path)
    # A second snapshot (dedup path, second manifest) must not leak either.
    (source / "later.txt").write_bytes(MARKERS[0] * 3)
    repo.backup(stcore.sources_for_paths([str(source)]))
    objects = files_under(tmp_path / "repo")
    assert any(k.startswith("keys/") for k in objects)
    assert sum(k.startswith("snapshots/") for k in objects) == 2
    needles = forbidden_needles(source, json_doc)
    needles["marker repeated (later.txt)"] = MARKERS[0] * 3
    master = repo.store.master_key
    assert master is not None
    for label, secret in (("encryption key", master.encryption), ("id key", master.ids)):
        needles[f"master {label} (raw)"] = secret
        needles[f"master {label} (hex)"] = secret.hex().encode()
        needles[f"master {label} (base64)"] = base64.b64encode(secret)
    needles["master key (base64)"] = base64.b64encode(master.raw())
    needles["password"] = PASSWORD.encode()
    assert leaks(objects, needles) == []
    # Blob ids are keyed: none equals the unkeyed hash of any file (each is one chunk here).
    ids = set(repo.index)
    for path in [*source.rglob("*"), json_doc]:
        if path.is_file():
            assert blake3.blake3(path.read_bytes()).digest() not in ids, path
    # The config is the one object in clear, and it says only how to read the rest.
    config = json.loads(objects["config"])
    assert config["encryption"] == cipher
    # And it all reads back.
    reopened = open_encrypted(tmp_path / "repo")
    view = reopened.snapshot("latest").sources[DISTINCTIVE_DIR]
    assert view.read_bytes(DISTINCTIVE_FILE) == (source / DISTINCTIVE_FILE).read_bytes()
    assert view.read_json("doc.json")[MARKERS[2].decode()] == MARKERS[3].decode()


def test_the_marker_only_file_is_one_keyed_blob(tmp_path: Path) -> None:
    repo = init_encrypted(tmp_path / "repo")
    source, _ = backup_marked(repo, tmp_path)
    data = (source / "marker-only.bin").read_bytes()
    view = repo.snapshot("latest").sources[DISTINCTIVE_DIR]
    node = view._file("marker-only.bin")
    assert len(node.content) == 1
    (blob_id,) = node.content
    assert blob_id == blake3.blake3(data, key=repo.store.master_key.ids).digest()  # type: ignore[union-attr]
    assert blob_id != blake3.blake3(data).digest()


def test_manifests_are_sealed_and_bound_to_their_snapshot_id(tmp_path: Path) -> None:
    repo = init_encrypted(tmp_path / "repo")
    backup_marked(repo, tmp_path)
    (key,) = [info.key for info in repo.backend.list("snapshots/")]
    stored = open_checked(key, repo.backend.read(key))
    with pytest.raises(ValueError):
        json.loads(stored)
    assert DISTINCTIVE_DIR.encode() not in stored and b"jsondoc" not in stored
    snapshot_id = key.rsplit("/", 1)[-1]
    payload = json.loads(repo.codec.unseal(stored, b"snapshot:" + snapshot_id.encode()))
    assert DISTINCTIVE_DIR in json.dumps(payload)  # it is there, only sealed
    other_id = snapshot_id[:-1] + ("1" if snapshot_id.endswith("0") else "0")  # always differs
    with pytest.raises(CorruptObjectError):
        repo.codec.unseal(stored, b"snapshot:" + other_id.encode())


# --- 3. passwords on the command line ------------------------------------------------------------


# --- 4. tampering --------------------------------------------------------------------------------


def pack_path(repo: Repository, pack_id: bytes) -> Path:
    return Path(repo.location) / object_key("data", pack_id)


def assert_check_names(root: Path, *needles: str) -> None:
    """Library and CLI `check --read-data` both fail and name every needle."""
    result = open_encrypted(root).check(read_data=True)
    assert not result.ok
    text = "\n".join(result.errors)
    for needle in needles:
        assert needle in text, text
    cli = run_cli("--repo", str(root), "check", "--read-data", env={"STCORE_PASSWORD": PASSWORD})
    assert cli.returncode == 1, cli.stdout + cli.stderr
    assert "Traceback" not in cli.stderr
    for needle in needles:
        assert needle in cli.stderr, cli.stderr


def test_an_untouched_encrypted_repository_checks_clean(backed_up: Repository) -> None:
    result = open_encrypted(backed_up.location).check(read_data=True)
    assert result.ok, result.errors
    cli = run_cli(
        "--repo", backed_up.location, "check", "--read-data", env={"STCORE_PASSWORD": PASSWORD}
    )
    assert cli.returncode == 0, cli.stderr


def test_a_flipped_bit_in_a_data_blob_is_caught(backed_up: Repository, tmp_path: Path) -> None:
    root = Path(backed_up.location)
    entry = max(
        (e for e in backed_up.index.values() if e.blob_type == "data"),
        key=lambda e: e.stored_length,
    )
    path = pack_path(backed_up, entry.pack_id)
    flip(path, entry.offset + entry.stored_length // 2)
    key = object_key("data", entry.pack_id)
    with pytest.raises(CorruptObjectError, match=rf"pack {key}, blob {entry.blob_id.hex()}"):
        open_encrypted(root).restore("latest", tmp_path / "out")
    assert_check_names(root, key, entry.blob_id.hex(), "authentication failed")


def test_a_changed_blob_fails_its_own_authentication_tag(
    backed_up: Repository, tmp_path: Path
) -> None:
    """Not only the pack hash (which a blob read never computes): the AEAD tag catches it."""
    entry = next(e for e in backed_up.index.values() if e.blob_type == "data")
    path = pack_path(backed_up, entry.pack_id)
    flip(path, entry.offset + 20)
    with pytest.raises(CorruptObjectError, match="authentication failed"):
        backed_up.store.read_entry(entry)
    result = open_encrypted(backed_up.location).check(read_data=True)
    assert any(entry.blob_id.hex() in e and "authentication failed" in e for e in result.errors), (
        result.errors
    )


def test_a_flipped_bit_in_a_pack_trailer_is_caught_by_check(
    backed_up: Repository, tmp_path: Path
) -> None:
    root = Path(backed_up.location)
    (info,) = list(backed_up.backend.list("data/"))
    path = root / info.key
    body = path.read_bytes()
    trailer_length = PACK_FOOTER.unpack(body[-PACK_FOOTER.size :])[0]
    flip(path, len(body) - PACK_FOOTER.size - trailer_length // 2)
    assert_check_names(root, info.key, "authentication failed")
    # Restore reads blobs through the index, never the trailer; every blob it reads is still
    # authenticated on its own, so the data comes back intact.
    open_encrypted(root).restore("latest", tmp_path / "out")
    assert (tmp_path / "out" / "src" / "sub" / "b.txt").read_text() == "bee " * 50


def test_a_flipped_bit_in_an_index_object_is_caught(backed_up: Repository, tmp_path: Path) -> None:
    root = Path(backed_up.location)
    (key,) = [info.key for info in backed_up.backend.list("index/")]
    flip(root / key, 40)
    with pytest.raises(CorruptObjectError, match=key):
        open_encrypted(root).restore("latest", tmp_path / "out")
    assert_check_names(root, key)


def test_a_changed_index_object_under_its_new_hash_fails_authentication(
    backed_up: Repository, tmp_path: Path
) -> None:
    root = Path(backed_up.location)
    (key,) = [info.key for info in backed_up.backend.list("index/")]
    body = bytearray((root / key).read_bytes())
    body[40] ^= 0x01
    (root / key).unlink()
    new_key = object_key("index", blake3.blake3(bytes(body)).digest())
    (root / new_key).write_bytes(bytes(body))
    with pytest.raises(CorruptObjectError, match=rf"{new_key}: authentication failed"):
        open_encrypted(root).restore("latest", tmp_path / "out")
    assert_check_names(root, new_key, "authentication failed")


def test_a_flipped_bit_in_a_tree_blob_is_caught(backed_up: Repository, tmp_path: Path) -> None:
    root = Path(backed_up.location)
    trees = [e for e in backed_up.index.values() if e.blob_type == "tree"]
    assert len(trees) == 2  # the root and sub/
    manifest = backed_up.snapshot("latest").manifest
    entry = next(e for e in trees if e.blob_id == manifest.sources["src"].root)
    flip(pack_path(backed_up, entry.pack_id), entry.offset + entry.stored_length // 2)
    key = object_key("data", entry.pack_id)
    fresh = open_encrypted(root)
    with pytest.raises(CorruptObjectError, match=rf"pack {key}, blob {entry.blob_id.hex()}"):
        fresh.restore("latest", tmp_path / "out")
    with pytest.raises(CorruptObjectError, match=entry.blob_id.hex()):
        fresh.snapshot("latest").sources["src"].files()
    assert_check_names(root, key, f"tree {entry.blob_id.hex()} cannot be read")


def test_a_flipped_bit_in_a_snapshot_manifest_is_caught(
    backed_up: Repository, tmp_path: Path
) -> None:
    root = Path(backed_up.location)
    (key,) = [info.key for info in backed_up.backend.list("snapshots/")]
    snapshot_id = key.rsplit("/", 1)[-1]
    flip(root / key, 30)
    reopened = open_encrypted(root)
    assert reopened.snapshots() == []  # listed apart, never blocking the others
    assert f"{key} cannot be read" in reopened.damaged_snapshots()[snapshot_id]
    with pytest.raises(CorruptObjectError, match=snapshot_id):
        reopened.restore(snapshot_id, tmp_path / "out")
    listed = run_cli("--repo", str(root), "snapshots", env={"STCORE_PASSWORD": PASSWORD})
    assert listed.returncode == 0 and snapshot_id in listed.stderr
    assert_check_names(root, snapshot_id)


def test_a_manifest_moved_to_another_snapshot_id_is_caught(
    backed_up: Repository, tmp_path: Path
) -> None:
    root = Path(backed_up.location)
    (key,) = [info.key for info in backed_up.backend.list("snapshots/")]
    forged = key[:-4] + "beef" if not key.endswith("beef") else key[:-4] + "dead"
    os.replace(root / key, root / forged)
    damaged = open_encrypted(root).damaged_snapshots()
    assert forged in damaged[forged.rsplit("/", 1)[-1]]
    assert_check_names(root, forged.rsplit("/", 1)[-1])


def test_swapped_packs_are_caught_by_check_and_restore(tmp_path: Path) -> None:
    repo = init_encrypted(tmp_path / "repo")
    first, second = tmp_path / "one", tmp_path / "two"
    for source in (first, second):
        source.mkdir()
        (source / "data.bin").write_bytes(os.urandom(150_000))
    ids = [repo.backup(stcore.sources_for_paths([str(s)])).manifest.id for s in (first, second)]
    a, b = sorted(info.key for info in repo.backend.list("data/"))
    root = tmp_path / "repo"
    os.replace(root / a, root / "swap.tmp")
    os.replace(root / b, root / a)
    os.replace(root / "swap.tmp", root / b)
    result = open_encrypted(root).check(read_data=True)
    mismatched = [w for w in result.warnings if "does not match its hash" in w]
    assert any(a in e for e in mismatched) and any(b in e for e in mismatched), result.errors
    assert_check_names(root, a, b)
    fresh = open_encrypted(root)
    for snapshot_id in ids:
        with pytest.raises(CorruptObjectError, match=r"pack data/../[0-9a-f]{64}"):
            fresh.restore(snapshot_id, tmp_path / f"out-{snapshot_id}")


# --- 5. keys -------------------------------------------------------------------------------------


# --- 6. known-answer vectors ---------------------------------------------------------------------
#
# These vectors freeze repository format v1: a frame is nonce || AEAD(code || body, aad), blob
# ids of an encrypted repository are BLAKE3 keyed with the master key's second half. If one of
# them changes, the format changed: bump FORMAT_VERSION and keep a reader for v1.

KAT_KEY = bytes(range(32))
KAT_ID_KEY = bytes(range(32, 64))
KAT_PLAINTEXT = b"stcore known answer"
KAT_AAD = b"blob:" + bytes(32)
KAT_AES_GCM = (
    "000102030405060708090a0b3476b574b780e270e32ee0e59188161ef4b3f5be9c0b445e11186012123de4dd823acf"
)
KAT_CHACHA = (
    "000102030405060708090a0bfa8f6b6f5b72852bd9ec489db87c6010be15c0bcefa034e7ee806c58af66b69944379a"
)
KAT_KEYED_BLOB_ID = "e8ff04aea781ff9a8e65043e06512ec3ec156855b50abbf5c43ba429b4ace532"
KAT_SEALED_BLOB = (
    "000102030405060708090a0b"
    "4771a278aa97a73be62ff8fcdfc91903f0a1e246"  # sealed: code byte 0 (stored) || plaintext
    "bce5745c6c3afb750e8d927c00993d31"
)


def fixed_nonce(size: int) -> bytes:
    return bytes(range(size))


@pytest.mark.parametrize(
    ("cls", "expected"), [(AesGcmEncryptor, KAT_AES_GCM), (ChaChaEncryptor, KAT_CHACHA)]
)
def test_encryptor_known_answers(cls: type[AesGcmEncryptor], expected: str) -> None:
    encryptor = cls(KAT_KEY, nonce_source=fixed_nonce)
    sealed = encryptor.encrypt(KAT_PLAINTEXT, KAT_AAD)
    assert sealed.hex() == expected
    assert len(sealed) == 12 + len(KAT_PLAINTEXT) + 16
    assert cls(KAT_KEY).decrypt(bytes.fromhex(expected), KAT_AAD) == KAT_PLAINTEXT


def kat_codec() -> Codec:
    return Codec(
        compressors={0: NoCompressor()},
        compressor=NoCompressor(),
        encryptor=AesGcmEncryptor(KAT_KEY, nonce_source=fixed_nonce),
        id_key=KAT_ID_KEY,
    )


def test_keyed_blob_id_known_answer() -> None:
    codec = kat_codec()
    assert codec.blob_id(KAT_PLAINTEXT).hex() == KAT_KEYED_BLOB_ID
    assert codec.blob_id(KAT_PLAINTEXT) != blake3.blake3(KAT_PLAINTEXT).digest()


def test_sealed_blob_known_answer() -> None:
    codec = kat_codec()
    blob_id = bytes.fromhex(KAT_KEYED_BLOB_ID)
    sealed = codec.seal_blob(blob_id, KAT_PLAINTEXT)
    assert sealed.hex() == KAT_SEALED_BLOB
    # The frame inside is the code byte 0 (stored uncompressed) followed by the plaintext.
    frame = AesGcmEncryptor(KAT_KEY).decrypt(sealed, b"blob:" + blob_id)
    assert frame == b"\x00" + KAT_PLAINTEXT
    assert codec.unseal_blob(blob_id, sealed, len(KAT_PLAINTEXT)) == KAT_PLAINTEXT
    with pytest.raises(CorruptObjectError):
        codec.unseal_blob(bytes(32), sealed, len(KAT_PLAINTEXT))  # moved to another id


# --- 7. ChaCha20-Poly1305 round trip -------------------------------------------------------------


def test_chacha_repository_round_trips_a_tree_byte_for_byte(tmp_path: Path) -> None:
    tree = make_sample_tree(tmp_path / "sample", big_size=600_000)
    repo = init_encrypted(tmp_path / "repo", "chacha20-poly1305")
    result = repo.backup(stcore.sources_for_paths([str(tree)]))
    assert result.errors == ()
    reopened = open_encrypted(tmp_path / "repo")
    assert reopened.config.encryption == "chacha20-poly1305"
    assert reopened.codec.encryptor.name == "chacha20-poly1305"
    reopened.restore(result.manifest.id, tmp_path / "out")
    assert snapshot_of_tree(tmp_path / "out" / "sample") == snapshot_of_tree(tree)
    assert reopened.check(read_data=True).ok
    with pytest.raises(PasswordError):
        open_encrypted(tmp_path / "repo", "not it")
