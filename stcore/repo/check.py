"""Check: verify a repository's structure and, optionally, every byte (``stcore check``).

The structural check reads every index object from the backend (never the cache), then makes
sure every indexed pack exists and is long enough, every snapshot's manifest reads, and every
tree and data blob a snapshot references is indexed. ``read_data`` also reads every pack whole
and verifies its hash, its trailer, and every blob in it against its id; a :class:`ReadSubset`
(restic's ``--read-data-subset``: ``2/5``, ``10%``, ``500M``) does so for some packs only. Packs
the index does not know and temporaries of interrupted writes are warnings; so is a damaged copy
of a blob that has a sound copy elsewhere. Damaged copies are recorded on this machine for the
next backup.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor

import attrs
import blake3

from stcore.durations import shown
from stcore.errors import (
    ConfigError,
    CorruptObjectError,
    ObjectNotFoundError,
    SnapshotNotFoundError,
)
from stcore.interfaces import Backend, ProgressCallback, StreamingBackend, no_progress
from stcore.models import IndexEntry
from stcore.repo.damage import load_damage, save_damage
from stcore.repo.format import (
    PACK_FOOTER,
    decode_pack_footer,
    decode_pack_trailer,
    hash_id,
    object_key,
)
from stcore.repo.idtable import ID_BYTES, IdTable
from stcore.repo.index import BlobIndex
from stcore.repo.memory import release_free_memory
from stcore.repo.store import Store

_PART = re.compile(r"([0-9]{1,9})/([0-9]{1,9})")
_PERCENT = re.compile(r"([0-9]{1,9}(?:\.[0-9]{1,9})?)%")
_SIZE = re.compile(r"([0-9]{1,15})([kmgt]?)(?:i?b)?", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
SUBSET_FORMS = "N/M, P% or SIZE (1/5, 2.5%, 500M)"


@attrs.frozen
class ReadSubset:
    """Which packs a check reads, in one of restic's three forms (:meth:`parse` takes its text).

    - ``part`` N of ``parts`` M: the packs whose id falls in group N of M. Groups are fixed by
      pack id, so running ``1/M``, ``2/M``, ... ``M/M`` (one a day, say) reads every pack once.
    - ``percent``: that share of the packs, chosen at random (at least one pack).
    - ``size``: packs chosen at random until they add up to that many bytes (or all are read).
    """

    text: str
    part: int = 0
    parts: int = 0
    percent: float = 0.0
    size: int = 0

    @classmethod
    def parse(cls, text: str) -> ReadSubset:
        """``N/M``, ``P%`` or ``SIZE`` (``500M``: suffixes k, m, g, t are powers of 1024); a
        :class:`~stcore.errors.ConfigError` naming the three forms otherwise."""
        value = text.strip()
        if match := _PART.fullmatch(value):
            part, parts = int(match.group(1)), int(match.group(2))
            if not 1 <= part <= parts:
                raise ConfigError(f"{shown(text)}: N/M needs 1 <= N <= M")
            return cls(f"{part}/{parts}", part=part, parts=parts)
        if match := _PERCENT.fullmatch(value):
            percent = float(match.group(1))
            if not 0 < percent <= 100:
                raise ConfigError(f"{shown(text)}: P% needs 0 < P <= 100")
            return cls(f"{match.group(1)}%", percent=percent)
        if match := _SIZE.fullmatch(value):
            size = int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]
            if size <= 0:
                raise ConfigError(f"{shown(text)}: SIZE must be above 0")
            return cls(value, size=size)
        raise ConfigError(f"{shown(text)}: use {SUBSET_FORMS}")

    def choose(self, packs: Mapping[str, int], rng: random.Random | None = None) -> set[str]:
        """The names (hex ids) of the packs to read, out of ``packs`` (name -> size)."""
        if self.parts:
            return {name for name in packs if in_part(name, self.part, self.parts)}
        shuffled = sorted(packs)
        (rng or random.SystemRandom()).shuffle(shuffled)
        if self.percent:
            return set(shuffled[: math.ceil(len(shuffled) * self.percent / 100)])
        chosen: set[str] = set()
        total = 0
        for name in shuffled:
            if total >= self.size:
                break
            chosen.add(name)
            total += packs[name]
        return chosen


def in_part(pack_hex: str, part: int, parts: int) -> bool:
    """Whether a pack belongs to group ``part`` (1-based) of ``parts``: by its id's first eight
    bytes, which are uniform (the id is a hash), so the groups are of even size."""
    return int(pack_hex[:16], 16) % parts == part - 1


@attrs.frozen(kw_only=True)
class CheckResult:
    """What check found: errors (data a snapshot needs is damaged or missing) and warnings
    (harmless leftovers and superseded copies, each with the command that cleans it up)."""

    snapshots: int
    packs: int
    blobs: int
    read_data: bool
    errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    #: the ``--read-data-subset`` that was read (``2/5``, ``10%``, ``500M``), if one was
    read_subset: str | None = None
    #: the packs whose bytes were read and verified (hex ids, sorted), and their total size
    packs_read: tuple[str, ...] = ()
    bytes_read: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors

    def __repr__(self) -> str:
        if self.read_data:
            read = ", data read"
        elif self.read_subset is not None:
            read = f", data subset {self.read_subset} read ({len(self.packs_read)} packs)"
        else:
            read = ""
        return (
            f"<CheckResult {len(self.errors)} errors, {len(self.warnings)} warnings: "
            f"{self.snapshots} snapshots, {self.packs} packs, {self.blobs} blobs{read}>"
        )


@attrs.define
class _Findings:
    errors: list[str] = attrs.field(factory=list)
    warnings: list[str] = attrs.field(factory=list)
    #: blob id -> {pack id: what is wrong with that copy}
    bad: dict[bytes, dict[bytes, str]] = attrs.field(factory=dict)
    #: blobs with a copy that was read and verified (read_data) or that looks sound: an
    #: IdTable holds an id in 36 bytes where a set of bytes objects took about 100
    good: IdTable = attrs.field(factory=IdTable)

    def bad_copy(self, blob_id: bytes, pack_id: bytes, problem: str) -> None:
        self.bad.setdefault(blob_id, {})[pack_id] = problem


def check(
    store: Store,
    *,
    read_data: bool = False,
    read_subset: ReadSubset | None = None,
    progress: ProgressCallback | None = None,
    rng: random.Random | None = None,
) -> CheckResult:
    """Verify structure (every referenced blob indexed, every indexed pack present and large
    enough) and, with ``read_data``, every byte of every pack against its hashes; with
    ``read_subset``, the bytes of the packs it chooses (``rng`` makes a random choice
    repeatable), the others only structurally.

    A blob counts as damaged only when no stored copy of it is sound; damaged copies are
    recorded on this machine (:mod:`stcore.repo.damage`) so the next backup stores them again.
    """
    if read_data and read_subset is not None:
        raise ConfigError("read every pack (read_data) or a subset of them, not both")
    progress = progress or no_progress
    found = _Findings()
    packs = store.pack_sizes(
        on_stray=lambda key: found.warnings.append(
            f"{key} is not a pack stcore wrote (a stray file?): not checked, and prune leaves it"
        )
    )
    if read_data:
        to_read = set(packs)
    elif read_subset is not None:
        to_read = read_subset.choose(packs, rng)
    else:
        to_read = set()
    read_ids = {bytes.fromhex(name) for name in to_read}
    index = store.load_index(
        cached=False,
        on_damaged=lambda key, exc: found.errors.append(
            f"{exc}; `stcore repair index` rebuilds the index from the packs"
        ),
    )
    damaged_index = bool(found.errors)
    store.set_index(index)
    # every indexed blob lands in ``good`` once its copy is verified: sized for them up front,
    # the table is not rebuilt as it fills (0.24 s of a 3.7 s check on the generated data)
    found.good.reserve(len(index))
    # pack id -> the ids of the blobs the index places there, end to end (a set of bytes
    # objects per pack held about 100 bytes a blob; a pack's set is made when it is read)
    indexed: dict[bytes, bytearray] = {}
    sizes = {bytes.fromhex(name): size for name, size in packs.items()}
    for blob_id, pack_id, offset, stored_length in index.locations():
        members = indexed.get(pack_id)
        if members is None:
            members = indexed[pack_id] = bytearray()
        members += blob_id
        size = sizes.get(pack_id)
        if size is None:
            found.bad_copy(blob_id, pack_id, f"pack {object_key('data', pack_id)} is missing")
        elif offset + stored_length + PACK_FOOTER.size > size:
            found.bad_copy(blob_id, pack_id, f"pack {object_key('data', pack_id)} is truncated")
        elif pack_id not in read_ids:
            found.good.insert(blob_id)
    snapshot_ids = store.snapshot_ids()
    found.errors.extend(_check_snapshots(store, snapshot_ids, index))
    # Packs are read and verified on reader threads while this one merges each pack's report
    # (in pack order) and reports progress. A local disk gets two readers, each reading its
    # pack in windows (zstd and BLAKE3 release the GIL: 3.6 s -> 3.15 s on the Linux tree, in
    # less memory than one reader holding a whole pack); a remote one gets ``store.workers``,
    # each reading a pack whole (one request), to overlap their waits on the network. The
    # trees are walked first, not beside the reads: with a cold page cache their scattered
    # reads and the packs' long ones competed for the disk (check 5.2 s -> 7.1 s on the Linux
    # tree, where restic took 5.3 s).
    readers, window = (store.workers, None) if store.remote else (LOCAL_READERS, PACK_WINDOW)
    reading = sorted(name for name in packs if name in to_read)
    if reading:  # the bytes the "bytes" events below add up to
        progress("total", sum(packs[name] for name in reading))
    reports: list[_PackReport] = []
    reader = ThreadPoolExecutor(readers, thread_name_prefix="stcore-check-packs")
    try:
        verified = reader.map(
            lambda name: _check_pack(store, index, bytes.fromhex(name), indexed, window), reading
        )
        for name, report in zip(reading, verified, strict=True):
            report.merge_copies(found)  # now: a pack's verified ids are held once, in found
            reports.append(report)
            release_free_memory()  # the pack just verified, freed on another thread's arena
            progress("bytes", packs[name])
            progress("pack", 1)
    finally:  # an error or Ctrl-C here: no queued pack is read after it
        reader.shutdown(wait=True, cancel_futures=True)
    for pack_hex in sorted(p for p in packs if bytes.fromhex(p) not in indexed):
        found.warnings.append(
            f"pack {object_key('data', pack_hex)} is not in the index (left by an interrupted "
            "backup or prune): `stcore prune` removes it, `stcore repair index` adopts it"
        )
    for report in reports:  # after the snapshots' and the orphans' findings, as ever
        found.errors.extend(report.errors)
        found.warnings.extend(report.warnings)
    _classify(found)
    backend = store.backend
    if isinstance(backend, StreamingBackend):
        leftovers = backend.count_abandoned()
        if leftovers:
            found.warnings.append(
                f"{leftovers} temporary files of interrupted writes: `stcore prune` removes them"
            )
    if damaged_index:  # a partial index must not become the one later reads trust
        store.forget_index()
    damage = {blob: set(copies) for blob, copies in found.bad.items()}
    if not read_data:  # packs whose bytes were not read: keep what is known of their copies
        for blob_id, copies in load_damage(store.cache_dir).items():  # (of packs still there)
            unread = {p for p in copies if p not in read_ids and p.hex() in packs}
            if unread:
                damage.setdefault(blob_id, set()).update(unread)
    save_damage(store.cache_dir, damage)
    return CheckResult(
        snapshots=len(snapshot_ids),
        packs=len(packs),
        blobs=len(index),
        read_data=read_data,
        errors=tuple(found.errors),
        warnings=tuple(found.warnings),
        read_subset=read_subset.text if read_subset is not None else None,
        packs_read=tuple(sorted(to_read)),
        bytes_read=sum(packs[name] for name in to_read),
    )


def _classify(found: _Findings) -> None:
    """A bad copy is an error when it was the blob's only copy, a warning otherwise."""
    for blob_id, copies in sorted(found.bad.items()):
        for problem in copies.values():
            if found.good.find(blob_id) >= 0:
                found.warnings.append(
                    f"{problem}: its copy of blob {blob_id.hex()} is damaged, but a sound copy "
                    "exists; `stcore prune` drops the damaged one"
                )
            else:
                found.errors.append(
                    f"{problem}: blob {blob_id.hex()} is damaged and has no sound copy; back up "
                    "the source again to store it anew, or run `stcore repair snapshots`"
                )


def _check_snapshots(
    store: Store, snapshot_ids: list[str], index: Mapping[bytes, IndexEntry]
) -> list[str]:
    """Problems with the snapshots: unreadable manifests, and their trees' (each tree once)."""
    errors: list[str] = []
    seen_trees: set[bytes] = set()
    for snapshot_id in snapshot_ids:
        try:
            manifest = store.load_manifest(snapshot_id)
        except (CorruptObjectError, SnapshotNotFoundError) as exc:
            errors.append(
                f"{exc}; `stcore forget {snapshot_id}` removes it, `stcore repair snapshots` "
                "cannot rebuild a lost manifest"
            )
            continue
        for summary in manifest.sources.values():
            errors.extend(
                f"snapshot {snapshot_id}, source {summary.name}: {problem}"
                for problem in _check_tree(store, summary.root, index, seen_trees)
            )
    return errors


def _check_tree(
    store: Store,
    root: bytes,
    index: Mapping[bytes, IndexEntry],
    seen: set[bytes],
) -> Iterator[str]:
    """Problems below ``root``: trees and data blobs missing from the index, unreadable trees.
    Iterative (depth is unbounded); trees already checked (``seen``) are not read again.

    Trees are read one by one: reading them a level (up to 256) at a time with
    ``Store.read_blobs`` held 9 MiB more for the Linux tree and saved no time, since a tree's
    neighbours in its pack are data blobs that a coalesced range reads too."""
    pending = [root]
    while pending:
        tree_id = pending.pop()
        if tree_id in seen:
            continue
        seen.add(tree_id)
        if tree_id not in index:
            yield f"tree {tree_id.hex()} is not in the index"
            continue
        try:
            nodes = store.read_tree(tree_id)
        except (CorruptObjectError, ObjectNotFoundError) as exc:
            yield f"tree {tree_id.hex()} cannot be read: {exc}"
            continue
        for node in nodes:
            for blob_id in node.content:
                if blob_id not in index:
                    yield f"{node.name}: data blob {blob_id.hex()} is not in the index"
            if node.kind == "dir" and node.subtree is not None:
                pending.append(node.subtree)


@attrs.define
class _PackReport:
    """What reading one pack found, made on a reader thread and merged on the caller's."""

    errors: list[str] = attrs.field(factory=list)
    warnings: list[str] = attrs.field(factory=list)
    bad: list[tuple[bytes, str]] = attrs.field(factory=list)  # (blob id, problem)
    good: list[bytes] = attrs.field(factory=list)
    pack_id: bytes = b""

    def merge_copies(self, found: _Findings) -> None:
        """Record which copies were bad and which good, and drop them from the report."""
        for blob_id, problem in self.bad:
            found.bad_copy(blob_id, self.pack_id, problem)
        found.good.insert_all(self.good)  # one loop for the pack's blobs, not a call each
        self.bad, self.good = [], []


#: pack readers of a check of a local repository
LOCAL_READERS = 2

#: a local check reads each pack in windows of at most this many bytes, so that two packs are
#: verified at once (on two cores) in less memory than one pack read whole held
PACK_WINDOW = 4 * 1024 * 1024


class _PackBytes:
    """One pack's bytes as the check needs them: its last bytes (footer and trailer), each
    blob's bytes in pack order, and the hash of the whole. Read whole (``window`` None: one
    request to a remote backend; or a pack no larger than a window), or from the start in
    windows of ``window`` bytes, each hashed as it arrives and dropped once the blobs in it
    are verified. A blob before the bytes held (no pack stcore writes has one: blobs are listed
    in order) is read on its own."""

    def __init__(self, backend: Backend, key: str, window: int | None) -> None:
        self._backend, self._key, self._window = backend, key, window
        self._whole: bytes | None = None
        self.size = -1 if window is None else backend.stat(key).size
        if window is None or self.size <= window:  # one read
            self._whole = backend.read(key)
            self.size = len(self._whole)
        self._hasher = blake3.blake3()
        self._held = bytearray()  # the pack's bytes from offset self._start
        self._start = 0
        self._read = 0  # bytes read (and hashed) from the start

    def tail(self, length: int) -> bytes:
        """The last ``length`` bytes (all of them when there are fewer)."""
        start = max(self.size - length, 0)
        if self._whole is not None:
            return self._whole[start:]
        return self._backend.read(self._key, start, self.size - start)

    def range(self, offset: int, length: int) -> bytes:
        """``length`` bytes from ``offset``, fewer where the pack ends first."""
        if self._whole is not None:
            return self._whole[offset : offset + length]
        if offset < self._start:  # before the bytes held: out of order, read apart
            return self._backend.read(self._key, offset, length)
        end = min(offset + length, self.size)
        if self._read < end:  # more is needed: drop what lies before it first (once a window)
            drop = min(offset - self._start, len(self._held))
            del self._held[:drop]
            self._start += drop
            while self._read < end and self._advance(keep_from=offset):
                pass
        if offset >= self._read:  # the pack ended before it (it shrank while being read)
            return self._backend.read(self._key, offset, length)
        return bytes(self._held[offset - self._start : end - self._start])

    def digest(self) -> bytes:
        """The hash of all the pack's bytes (those not read yet are read now, not kept)."""
        if self._whole is not None:
            return hash_id(self._whole)
        while self._read < self.size and self._advance(keep_from=None):
            pass
        return self._hasher.digest()

    def _advance(self, *, keep_from: int | None) -> bool:
        """Read and hash the next window, keeping its bytes from ``keep_from`` on (None:
        none); False at the end of the object. The bytes held are always those from
        ``_start`` to ``_read``."""
        assert self._window is not None
        chunk = self._backend.read(self._key, self._read, min(self._window, self.size - self._read))
        if not chunk:
            self.size = self._read  # it shrank while being read: its hash cannot match
            return False
        self._hasher.update(chunk)
        read = self._read + len(chunk)
        if keep_from is None or read <= keep_from:  # nothing in it is asked for
            self._held.clear()
            self._start = read
        else:
            skip = max(keep_from - self._read, 0)  # a gap before the blob asked for
            if skip:
                self._held.clear()
                self._start = self._read + skip
            self._held += memoryview(chunk)[skip:]
        self._read = read
        return True


def _check_pack(
    store: Store,
    index: BlobIndex,
    pack_id: bytes,
    indexed_by_pack: Mapping[bytes, bytearray],
    window: int | None = None,
) -> _PackReport:
    """Read one pack: its hash, its trailer, and every blob against its id, in windows of
    ``window`` bytes or whole (:class:`_PackBytes`). Runs on a reader thread: it only reads
    ``index`` and ``indexed_by_pack``."""
    report = _PackReport(pack_id=pack_id)
    ids = bytes(indexed_by_pack.get(pack_id, b""))
    indexed = {ids[at : at + ID_BYTES] for at in range(0, len(ids), ID_BYTES)}
    key = object_key("data", pack_id)
    try:
        return _check_pack_bytes(
            store, index, key, _PackBytes(store.backend, key, window), report, indexed
        )
    except ObjectNotFoundError:
        return _PackReport(pack_id=pack_id, errors=[f"pack {key} disappeared during the check"])


def _check_pack_bytes(
    store: Store,
    index: BlobIndex,
    key: str,
    body: _PackBytes,
    report: _PackReport,
    indexed: set[bytes],
) -> _PackReport:
    pack_id = report.pack_id
    try:
        size = body.size
        trailer_length = decode_pack_footer(body.tail(PACK_FOOTER.size), size)
        tail = body.tail(PACK_FOOTER.size + trailer_length)
        blobs = decode_pack_trailer(store.codec, tail[: len(tail) - PACK_FOOTER.size])
    except CorruptObjectError as exc:
        if body.digest() != pack_id:
            report.warnings.append(_changed_pack(key, pack_id))
        report.bad.extend((blob_id, f"pack {key}: {exc}") for blob_id in indexed)
        if not indexed:
            report.warnings.append(f"pack {key} is not in the index and unreadable: {exc}")
        return report
    listed = set()
    unseal, good = store.codec.unseal_blob, report.good
    for blob in blobs:
        blob_id = blob.blob_id
        listed.add(blob_id)
        try:
            unseal(blob_id, body.range(blob.offset, blob.stored_length), blob.raw_length)
        except CorruptObjectError as exc:
            report.bad.append((blob_id, f"pack {key}, blob {blob_id.hex()}: {exc}"))
            continue
        good.append(blob_id)
        if blob_id not in indexed:
            if indexed and blob_id not in index:
                report.warnings.append(
                    f"pack {key} holds blob {blob_id.hex()}, which the index does not list: "
                    "`stcore repair index` adopts it, `stcore prune` drops it"
                )
            continue
        location = index.location(blob_id)
        if location is not None and location[0] == pack_id and location[1] != blob.offset:
            report.errors.append(f"pack {key}: index and trailer disagree on {blob_id.hex()}")
    report.bad.extend(
        (blob_id, f"pack {key} does not hold blob {blob_id.hex()}") for blob_id in indexed - listed
    )
    if body.digest() != pack_id:
        report.warnings.insert(0, _changed_pack(key, pack_id))
    return report


def _changed_pack(key: str, pack_id: bytes) -> str:
    return (
        f"pack {key} does not match its hash (its bytes were changed; each blob is checked "
        f"on its own): `stcore repair packs {pack_id.hex()}` rewrites what still verifies"
    )
