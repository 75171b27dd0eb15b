"""Trust nothing read: every object kind detects every single-bit flip, hostile objects are
refused in one line, and one damaged object never blocks the others."""

from __future__ import annotations

import json
import lzma
import os
import resource
import stat
import subprocess
from pathlib import Path

import pytest

import stcore
from stcore.errors import (
    CorruptObjectError,
    FormatVersionError,
    PasswordError,
    RepositoryError,
    RestoreError,
)
from stcore.models import SnapshotManifest, SourceSummary
from stcore.repo.format import RepositoryConfig, encode_index, object_key
from stcore.repo.keys import unwrap
from stcore.repo.locks import read_lock, repository_lock
from stcore.repo.packer import Packer
from stcore.repository import Repository
from tests.conftest import run_cli
from tests.helpers import CHEAP, PASSWORD, init_encrypted, rewrite_config


def _backed_up(tmp_path: Path, count: int = 1) -> Repository:
    repo = stcore.init_repository(str(tmp_path / "repo"))
    (tmp_path / "src").mkdir()
    for number in range(count):
        (tmp_path / "src" / "f.txt").write_text(f"version {number}\n" * 100)
        repo.backup(stcore.sources_for_paths([str(tmp_path / "src")]), tags=[f"n{number}"])
    return repo


def _every_flip(data: bytes) -> list[bytes]:
    flipped = []
    for bit in range(len(data) * 8):
        body = bytearray(data)
        body[bit // 8] ^= 1 << (bit % 8)
        flipped.append(bytes(body))
    return flipped


def test_every_bit_flip_of_a_config_is_detected(tmp_path: Path) -> None:
    repo = stcore.init_repository(str(tmp_path / "repo"))
    raw = (tmp_path / "repo" / "config").read_bytes()
    for damaged in _every_flip(raw):
        with pytest.raises(CorruptObjectError, match="config of"):
            RepositoryConfig.from_bytes(damaged, repo.location)


def test_every_bit_flip_of_an_unencrypted_manifest_is_detected(tmp_path: Path) -> None:
    repo = _backed_up(tmp_path)
    (snapshot_id,) = repo.store.snapshot_ids()
    key = object_key("snapshots", snapshot_id)
    path = Path(repo.location) / key
    original = path.read_bytes()
    for damaged in _every_flip(original):
        path.write_bytes(damaged)
        with pytest.raises(CorruptObjectError, match=key):
            repo.load_manifest(snapshot_id)
    path.write_bytes(original)
    assert repo.load_manifest(snapshot_id).id == snapshot_id


def test_every_bit_flip_of_a_key_is_detected_and_named(tmp_path: Path) -> None:
    repo = init_encrypted(tmp_path / "repo")
    (key_id,) = [i.key.split("/")[-1] for i in repo.backend.list("keys/")]
    raw = (tmp_path / "repo" / "keys" / key_id).read_bytes()
    for damaged in _every_flip(raw):  # the checksum fails before any key derivation
        with pytest.raises(CorruptObjectError, match=f"key {key_id}"):
            unwrap(damaged, PASSWORD, key_id, checked=True)


def test_every_bit_flip_of_an_index_object_is_detected(tmp_path: Path) -> None:
    repo = _backed_up(tmp_path)
    (key,) = [i.key for i in repo.backend.list("index/")]
    path = Path(repo.location) / key
    original = path.read_bytes()
    for damaged in _every_flip(original):
        path.write_bytes(damaged)
        with pytest.raises(CorruptObjectError, match=key):
            repo.store.read_index_rows(key, cached=False)
    path.write_bytes(original)


def test_every_bit_flip_of_a_small_pack_is_named_by_check(tmp_path: Path) -> None:
    repo = stcore.init_repository(str(tmp_path / "repo"))
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f.txt").write_text("x")
    repo.backup(stcore.sources_for_paths([str(tmp_path / "src")]))
    packs = [i.key for i in repo.backend.list("data/")]
    assert len(packs) == 1
    (key,) = packs
    path = Path(repo.location) / key
    original = path.read_bytes()
    harmless = 0
    for damaged in _every_flip(original):
        path.write_bytes(damaged)
        result = repo.check(read_data=True)
        if result.ok:  # a flip zstd ignores (a frame header flag): the data is intact
            (warning,) = result.warnings
            assert key in warning and "does not match its hash" in warning
            harmless += 1
        else:
            assert any(key in e for e in result.errors), result
    assert harmless < len(original)  # most flips break a blob; every one is named
    path.write_bytes(original)
    assert repo.check(read_data=True).ok


def test_every_bit_flip_of_a_lock_is_seen_and_the_lock_treated_as_stale(tmp_path: Path) -> None:
    repo = stcore.init_repository(str(tmp_path / "repo"))
    with repository_lock(repo.backend, exclusive=True, purpose="prune", wait=0) as held:
        raw = repo.backend.read(held.key)
    for damaged in _every_flip(raw):
        repo.backend.write("locks/flipped", damaged)
        assert read_lock(repo.backend, "locks/flipped") is None
        repo.backend.delete("locks/flipped")


def test_an_encrypted_repository_cannot_be_switched_to_plaintext(tmp_path: Path) -> None:
    init_encrypted(tmp_path / "repo").close()
    rewrite_config(tmp_path / "repo", encryption="none", mac=None)
    with pytest.raises(RepositoryError, match=r"keys/.*refusing"):
        stcore.open_repository(str(tmp_path / "repo"), password=PASSWORD)
    for key in (tmp_path / "repo" / "keys").iterdir():
        key.unlink()
    with pytest.raises((CorruptObjectError, RepositoryError, PasswordError)):
        repo = stcore.open_repository(str(tmp_path / "repo"), password=PASSWORD)
        (tmp_path / "plain").mkdir()
        (tmp_path / "plain" / "secret.txt").write_text("must never be stored in plaintext")
        repo.backup(stcore.sources_for_paths([str(tmp_path / "plain")]))


def test_a_config_changed_without_the_password_fails_authentication(tmp_path: Path) -> None:
    init_encrypted(tmp_path / "repo").close()
    rewrite_config(tmp_path / "repo", pack_size=1 << 20)  # a valid checksum, but no valid MAC
    with pytest.raises(CorruptObjectError, match="failed authentication"):
        stcore.open_repository(str(tmp_path / "repo"), password=PASSWORD)
    result = run_cli(
        "--repo", str(tmp_path / "repo"), "snapshots", env={"STCORE_PASSWORD": PASSWORD}
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr


def test_a_newer_version_with_a_valid_checksum_asks_for_an_upgrade(tmp_path: Path) -> None:
    stcore.init_repository(str(tmp_path / "repo")).close()
    rewrite_config(tmp_path / "repo", version=3)
    with pytest.raises(FormatVersionError, match="Upgrade stcore"):
        stcore.open_repository(str(tmp_path / "repo"))


def test_a_damaged_key_never_locks_out_the_other_passwords(tmp_path: Path) -> None:
    repo = init_encrypted(tmp_path / "repo")
    second = repo.add_key("second", CHEAP)
    first = repo.key_id
    path = tmp_path / "repo" / "keys" / str(first)
    raw = path.read_bytes()
    header = raw[:36]
    document = json.loads(raw[36:])
    document["kdf"]["lanes"] = 0
    path.write_bytes(header + json.dumps(document).encode())  # checksum now wrong, too
    with stcore.open_repository(str(tmp_path / "repo"), password="second") as opened:
        assert opened.key_id == second
    with pytest.raises(PasswordError, match=f"damaged, skipped: {first}"):
        stcore.open_repository(str(tmp_path / "repo"), password=PASSWORD)


@pytest.mark.parametrize("lock", [b"[]", b"{}", b'{"time": "soon"}', b"\xff" * 10, b"null"])
def test_a_malformed_lock_never_stops_a_backup_or_prune(tmp_path: Path, lock: bytes) -> None:
    repo = _backed_up(tmp_path)
    repo.backend.write("locks/0000", lock)
    repo.lock_wait = 0
    repo.backup(stcore.sources_for_paths([str(tmp_path / "src")]))
    repo.prune(wait=0)
    assert run_cli("--repo", repo.location, "check").returncode == 0


def test_a_damaged_manifest_never_blocks_the_others_on_a_machine_with_no_catalog(
    tmp_path: Path,
) -> None:
    repo = _backed_up(tmp_path, count=3)
    bad, good, _ = repo.store.snapshot_ids()
    path = Path(repo.location) / object_key("snapshots", bad)
    path.write_bytes(path.read_bytes()[:40])
    fresh_cache = tmp_path / "fresh-cache"
    env = {"STCORE_CACHE_DIR": str(fresh_cache)}
    listing = run_cli("--repo", repo.location, "snapshots", "--json", env=env)
    assert listing.returncode == 0 and "Traceback" not in listing.stderr
    assert {s["id"] for s in json.loads(listing.stdout)} == set(repo.store.snapshot_ids()) - {bad}
    assert bad in listing.stderr and "damaged" in listing.stderr
    restore = run_cli("--repo", repo.location, "restore", good, "--target", str(tmp_path / "r"),
                      env=env)  # fmt: skip
    assert restore.returncode == 0, restore.stderr
    forget = run_cli("--repo", repo.location, "forget", bad, env=env)
    assert forget.returncode == 0, forget.stderr
    assert bad not in repo.store.snapshot_ids()


def test_a_manifest_bomb_is_refused_without_allocating_it(tmp_path: Path) -> None:
    repo = _backed_up(tmp_path, count=2)
    victim = repo.store.snapshot_ids()[0]
    bomb = b"\x03" + lzma.compress(b"\0" * (200 << 20))  # lzma frame: 200 MiB of zeros
    key = object_key("snapshots", victim)
    from stcore.repo.format import seal_checked

    repo.backend.delete(key)
    repo.backend.write(key, seal_checked(key, bomb))
    with pytest.raises(CorruptObjectError, match="more than"):
        repo.load_manifest(victim)
    listing = run_cli(
        "--repo", repo.location, "snapshots", env={"STCORE_CACHE_DIR": str(tmp_path / "c")}
    )
    assert listing.returncode == 0 and "damaged" in listing.stderr


def _hostile(
    repo: Repository,
    tree: bytes,
    *,
    extra: dict[bytes, bytes] | None = None,
    data: tuple[bytes, ...] = (),
) -> str:
    """Store tree blobs as they are (ids computed honestly), ``data`` blobs for file content,
    and a manifest whose one source has ``tree`` at its root; return the snapshot id."""
    codec = repo.codec
    packer = Packer(repo.backend, codec, pack_size=repo.config.pack_size, workers=1)
    for blob in data:
        packer.add(codec.blob_id(blob), "data", blob)
    for data in [tree, *(extra or {}).values()]:
        blob_id = codec.blob_id(data)
        if blob_id not in repo.index and not packer.is_known(blob_id):
            packer.add(blob_id, "tree", data)
    entries = packer.finish().values()
    if entries:
        repo.store.write_content_addressed("index", encode_index(codec, entries))
        repo.index.update(entries)
    import datetime as dt

    from stcore.models import new_snapshot_id

    manifest = SnapshotManifest(
        id=new_snapshot_id(),
        time=dt.datetime.now(dt.UTC),
        host="h",
        sources={"s": SourceSummary(name="s", type="files", root=codec.blob_id(tree))},
    )
    repo.store.write_manifest(manifest)
    return manifest.id


def _node(name: object, kind: str = "file", **fields: object) -> dict[str, object]:
    return {"name": name, "type": kind, "mode": 0o644, "mtime_ns": 0, "size": 0, "content": [],
            **fields}  # fmt: skip


def _tree_bytes(*nodes: dict[str, object]) -> bytes:
    return json.dumps({"nodes": list(nodes)}, sort_keys=True, separators=(",", ":")).encode()


@pytest.mark.parametrize(
    "tree",
    [
        _tree_bytes(_node(7)),
        _tree_bytes(_node(["x"])),
        _tree_bytes(_node("d", kind="dir", subtree=None)),
        _tree_bytes(_node("f", mode=1 << 70)),
        _tree_bytes(_node("f", mode=-1)),
        _tree_bytes(_node("f", content=["zz"])),
        _tree_bytes(_node("f", size="big")),
        _tree_bytes(_node("f", kind="fifo")),
        _tree_bytes(_node("f", kind=["file"])),  # type: ignore[arg-type]
        _tree_bytes(_node("f", kind=7)),  # type: ignore[arg-type]
        _tree_bytes(_node("..")),
        _tree_bytes(_node("a/b")),
        b'{"nodes": {"not": "a list"}}',
        b"[" * 100_000 + b"]" * 100_000,
        b"not json",
    ],
    ids=[
        "int-name",
        "list-name",
        "dir-no-subtree",
        "huge-mode",
        "negative-mode",
        "bad-id",
        "str-size",
        "unknown-type",
        "list-type",
        "int-type",
        "dotdot",
        "slash",
        "nodes-dict",
        "deep-json",
        "not-json",
    ],
)
def test_a_hostile_tree_is_refused_before_anything_is_written(tmp_path: Path, tree: bytes) -> None:
    repo = stcore.init_repository(str(tmp_path / "repo"))
    into = _node("z", kind="dir", subtree=repo.codec.blob_id(tree).hex())
    snapshot_id = _hostile(repo, _tree_bytes(_node("first.txt"), into), extra={b"t": tree})
    with pytest.raises((CorruptObjectError, RestoreError)):
        repo.restore(snapshot_id, tmp_path / "out")
    assert not (tmp_path / "out" / "s").exists()
    result = run_cli("--repo", repo.location, "restore", snapshot_id, "--target",
                     str(tmp_path / "out2"))  # fmt: skip
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out2" / "s").exists()


def test_10000_nested_trees_restore_completely_with_few_descriptors(tmp_path: Path) -> None:
    repo = stcore.init_repository(str(tmp_path / "repo"))
    content = b"at the bottom\n"
    leaf = _tree_bytes(_node("deepest.txt", size=len(content), mtime_ns=7 * 10**18,
                             content=[repo.codec.blob_id(content).hex()]))  # fmt: skip
    trees = {b"leaf": leaf}
    child = leaf
    levels = 10_000
    for depth in range(levels):
        child = _tree_bytes(_node(f"d{depth % 10}", kind="dir", mode=0o750,
                                  subtree=repo.codec.blob_id(child).hex()))  # fmt: skip
        trees[str(depth).encode()] = child
    snapshot_id = _hostile(repo, child, extra=trees, data=(content,))
    assert len(list(repo.walk(repo.codec.blob_id(child)))) == levels + 1
    out = tmp_path / "out"
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # far fewer descriptors than levels: the restore must never hold one per directory
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 256), hard))
    try:
        result = repo.restore(snapshot_id, out)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        assert (result.files, result.dirs, result.bytes) == (1, levels + 1, len(content))
        fd = os.open(out / "s", os.O_RDONLY | os.O_DIRECTORY)
        try:
            for depth in reversed(range(levels)):  # the outermost tree holds the last one made
                assert os.listdir(fd) == [f"d{depth % 10}"]
                child_fd = os.open(f"d{depth % 10}", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW,
                                   dir_fd=fd)  # fmt: skip
                assert stat.S_IMODE(os.fstat(child_fd).st_mode) == 0o750
                os.close(fd)
                fd = child_fd
            assert os.listdir(fd) == ["deepest.txt"]
            file_fd = os.open("deepest.txt", os.O_RDONLY | os.O_NOFOLLOW, dir_fd=fd)
            with os.fdopen(file_fd, "rb") as stream:
                assert stream.read() == content
                assert os.fstat(stream.fileno()).st_mtime_ns == 7 * 10**18
        finally:
            os.close(fd)
    finally:
        subprocess.run(["rm", "-rf", str(out)], check=True)  # deeper than rmtree goes
