"""Fuzzing every command that reads a repository with damaged and hostile objects.

A seeded mutator damages one real object at a time (config, key, lock, manifest, index object,
pack: flipped bits, overwritten bytes, truncation, appended junk, repeated runs, zeroed spans)
of a small encrypted and a small unencrypted repository, then runs every reading command against
it, each time on a "fresh machine" (an empty cache). Every command must end with exit code 0 or 1
(3 is a partial backup, never produced here), never a traceback, and an error must be one line.
The fuzz runs for a fixed budget of wall-clock seconds (``STCORE_FUZZ_SECONDS``, default 30) and
asserts it tried a minimum number of mutated objects, so it cannot silently do nothing.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

import stcore
from stcore.cli import cli
from stcore.repo.format import seal_checked
from tests.helpers import CHEAP, PASSWORD

BUDGET = float(os.environ.get("STCORE_FUZZ_SECONDS", "30"))
SEED = int(os.environ.get("STCORE_FUZZ_SEED", "20261202"))

READERS: list[list[str]] = [
    ["snapshots"],
    ["snapshots", "--json"],
    ["show", "latest", "--files"],
    ["restore", "latest", "--target", "{target}"],
    ["dump", "latest", "src", "a.txt"],
    ["diff", "latest", "latest"],
    ["check"],
    ["check", "--read-data"],
    ["stats", "--json"],
    ["forget", "--keep-last", "1", "--dry-run"],
    ["prune", "--dry-run", "--wait", "0"],
    ["key", "list"],
    ["repair", "snapshots", "--dry-run"],
]


Mutation = Callable[[bytes, random.Random], bytes]


def _flip(data: bytes, rng: random.Random) -> bytes:
    if not data:
        return b"\x00"
    body = bytearray(data)
    bit = rng.randrange(len(body) * 8)
    body[bit // 8] ^= 1 << (bit % 8)
    return bytes(body)


def _overwrite(data: bytes, rng: random.Random) -> bytes:
    if not data:
        return rng.randbytes(8)
    start = rng.randrange(len(data))
    return data[:start] + rng.randbytes(rng.randint(1, 16)) + data[start + 16 :]


def _truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(len(data) + 1)]


def _append(data: bytes, rng: random.Random) -> bytes:
    return data + rng.choice([rng.randbytes(rng.randint(1, 64)), b"\x00" * 4096, b"{}"])


def _repeat(data: bytes, rng: random.Random) -> bytes:
    if len(data) < 2:
        return data * 3
    start = rng.randrange(len(data) - 1)
    end = rng.randrange(start + 1, len(data))
    return data[:end] + data[start:end] * rng.randint(2, 50) + data[end:]


def _zero(data: bytes, rng: random.Random) -> bytes:
    if not data:
        return data
    start = rng.randrange(len(data))
    length = rng.randint(1, max(1, len(data) // 4))
    return data[:start] + bytes(len(data[start : start + length])) + data[start + length :]


MUTATIONS: list[Mutation] = [_flip, _flip, _overwrite, _truncate, _append, _repeat, _zero]


def _build(root: Path, *, encrypted: bool) -> Path:
    repo_path = root / "repo"
    if encrypted:
        repo = stcore.init_repository(
            str(repo_path), encryption="aes-256-gcm", password=PASSWORD, kdf=CHEAP
        )
    else:
        repo = stcore.init_repository(str(repo_path))
    source = root / "src"
    (source / "sub").mkdir(parents=True)
    (source / "a.txt").write_text("alpha\n" * 2000)
    (source / "sub" / "b.bin").write_bytes(random.Random(1).randbytes(300_000))
    repo.backup(stcore.sources_for_paths([str(source)]), tags=["one"])
    (source / "a.txt").write_text("beta\n" * 3000)
    repo.backup(stcore.sources_for_paths([str(source)]), tags=["two"])
    key = "locks/feedfacefeedfacefeedfacefeedface"
    document = {"host": "elsewhere", "pid": 1, "time": time.time(), "exclusive": False}
    repo.backend.write(key, seal_checked(key, json.dumps(document).encode()))  # one to damage
    repo.close()
    return repo_path


def _objects(repo_path: Path) -> list[Path]:
    found = [repo_path / "config"]
    for kind in ("keys", "locks", "snapshots", "index", "data"):
        found += sorted(p for p in (repo_path / kind).rglob("*") if p.is_file())
    return found


def _run_readers(repo_path: Path, scratch: Path, encrypted: bool) -> list[str]:
    """Every reader once against the current (damaged) repository; the problems found."""
    problems = []
    runner = CliRunner()
    env = {"STCORE_CACHE_DIR": str(scratch / "cache"), "STCORE_LOCK_WAIT": "0"}
    if encrypted:
        env["STCORE_PASSWORD"] = PASSWORD
    for reader in READERS:
        args = [a.replace("{target}", str(scratch / "restore")) for a in reader]
        result = runner.invoke(cli, ["--repo", str(repo_path), *args], env=env)
        shutil.rmtree(scratch, ignore_errors=True)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            problems.append(f"{reader}: {type(result.exception).__name__}: {result.exception}")
            continue
        if result.exit_code not in (0, 1):
            problems.append(f"{reader}: exit code {result.exit_code}: {result.stderr[-300:]}")
        errors = [line for line in result.stderr.splitlines() if "error:" in line]
        if result.exit_code == 1 and reader[0] != "check" and len(errors) != 1:
            problems.append(f"{reader}: not one error line: {result.stderr[-300:]!r}")
        if "Traceback" in result.stderr:
            problems.append(f"{reader}: traceback")
    return problems


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
def test_no_damaged_or_hostile_object_makes_a_reader_crash(tmp_path: Path, encrypted: bool) -> None:
    rng = random.Random(SEED + encrypted)
    repo_path = _build(tmp_path, encrypted=encrypted)
    pristine = tmp_path / "pristine"
    shutil.copytree(repo_path, pristine)
    objects = _objects(repo_path)
    kinds = {p.relative_to(repo_path).parts[0] for p in objects}
    assert kinds == {"config", "keys", "locks", "snapshots", "index", "data"} - (
        set() if encrypted else {"keys"}
    )
    deadline = time.monotonic() + BUDGET / 2
    tried: dict[str, int] = {}
    failures: list[str] = []
    while time.monotonic() < deadline or len(tried) < len(kinds):
        victim = rng.choice(objects)
        kind = victim.relative_to(repo_path).parts[0]
        if time.monotonic() >= deadline and kind in tried:
            continue  # past the budget: only until every kind was tried once
        mutation = rng.choice(MUTATIONS)
        victim.write_bytes(mutation(victim.read_bytes(), rng))
        try:
            problems = _run_readers(repo_path, tmp_path / "scratch", encrypted)
        finally:  # every command sees one damaged object in an otherwise pristine repository
            shutil.rmtree(repo_path)
            shutil.copytree(pristine, repo_path)
        tried[kind] = tried.get(kind, 0) + 1
        failures += [f"{victim.name} ({mutation.__name__}): {p}" for p in problems]
        if len(failures) > 20:
            break
    print(f"fuzz ({'encrypted' if encrypted else 'plain'}): {sum(tried.values())} mutated "
          f"objects x {len(READERS)} commands, by kind {tried}")  # fmt: skip
    assert not failures, "\n".join(failures[:20])
    assert sum(tried.values()) >= 10
