"""``check --read-data-subset``: restic's three forms, and only the chosen packs are read.

* ``N/M``, ``P%`` and ``SIZE`` parse; anything else (``0/3``, ``4/3``, ``150%``, ``abc``, control
  characters) is a one-line usage error (exit 2) that quotes it safely;
* a check behind ``count://`` (a backend that records every read) reads exactly the chosen packs
  whole, and ``1/3``, ``2/3``, ``3/3`` together read every pack exactly once;
* damage in a chosen pack is found; damage in a pack outside the subset is not read, and what an
  earlier full check recorded about such a pack is kept for the next backup;
* ``--json`` names the subset, the packs read and their bytes.
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

import stcore
from stcore.cli import cli
from stcore.errors import ConfigError
from stcore.repo.check import ReadSubset, in_part
from stcore.repo.damage import load_damage
from stcore.repository import Repository
from tests.conftest import run_cli
from tests.test_ai_access import Reads, counting_host

PACK_SIZE = 4096


@pytest.fixture
def many_packs(tmp_path: Path) -> tuple[str, Path]:
    """A ``count://`` repository of one snapshot spread over a few dozen small packs."""
    source = tmp_path / "src"
    source.mkdir()
    rng = random.Random(7)
    for i in range(40):
        (source / f"f{i:02d}.bin").write_bytes(rng.randbytes(3000))
    url = f"count://{tmp_path / 'repo'}"
    repo = stcore.init_repository(url, host=counting_host([]), pack_size=PACK_SIZE)
    repo.backup(stcore.sources_for_paths([str(source)]))
    repo.close()
    return url, tmp_path / "repo"


def open_counting(url: str, reads: Reads) -> Repository:
    return stcore.open_repository(url, host=counting_host(reads), cache=False)


def pack_names(root: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in (root / "data").rglob("*") if p.is_file()}


def data_only_packs(url: str) -> list[str]:
    """The packs holding no tree blob, sorted. Which blobs share a pack depends on when each
    sealing batch finished, so the last pack may hold the trees with data: damage there is
    found by any check, since every check reads the trees."""
    with open_counting(url, []) as repo:
        index = repo.store.index
        trees = {index[b].pack_id.hex() for b in index if index[b].blob_type == "tree"}
        packs = {index[b].pack_id.hex() for b in index}
    return sorted(packs - trees)


def whole_pack_reads(reads: Reads) -> list[str]:
    """The packs read whole (a structural check reads tree blobs: ranges of some packs)."""
    return [
        key.rsplit("/", 1)[-1]
        for key, offset, length in reads
        if key.startswith("data/") and offset == 0 and length is None
    ]


# --- parsing -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fields"),
    [
        ("1/3", {"part": 1, "parts": 3}),
        ("3/3", {"part": 3, "parts": 3}),
        (" 2/5 ", {"part": 2, "parts": 5}),
        ("10%", {"percent": 10.0}),
        ("2.5%", {"percent": 2.5}),
        ("100%", {"percent": 100.0}),
        ("500M", {"size": 500 << 20}),
        ("500m", {"size": 500 << 20}),
        ("2G", {"size": 2 << 30}),
        ("1k", {"size": 1024}),
        ("1t", {"size": 1 << 40}),
        ("64MiB", {"size": 64 << 20}),
        ("123", {"size": 123}),
    ],
)
def test_the_three_forms_parse(text: str, fields: dict[str, object]) -> None:
    subset = ReadSubset.parse(text)
    for name, value in fields.items():
        assert getattr(subset, name) == value, (text, name)


BAD = [
    *("0/3", "4/3", "1/0", "0/0", "-1/3", "1.5/3", "1/3/5", "\u0663/\u0665"),
    *("150%", "0%", "0.0%", "-5%", "10 %"),
    *("0", "0k", "5X", "1e3", "9" * 40),
    *("abc", "", "[x]", "\x1b[31m1/3"),
]


@pytest.mark.parametrize("text", BAD)
def test_anything_else_is_refused_naming_the_forms(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        ReadSubset.parse(text)
    message = str(caught.value)
    assert "\n" not in message and "\x1b" not in message and len(message) < 100


@pytest.mark.parametrize("text", ["0/3", "4/3", "150%", "abc", "\x1b[31m[x]", "1/3\n2/3"])
def test_cli_refuses_a_bad_subset_in_one_line_with_exit_2(repo: Repository, text: str) -> None:
    result = run_cli("--repo", repo.location, "check", "--read-data-subset", text)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("stcore: error: --read-data-subset: ")
    assert "\x1b" not in result.stderr
    reasons = ("use N/M, P% or SIZE", "needs 1 <= N <= M", "needs 0 < P <= 100")
    assert any(reason in result.stderr for reason in reasons), result.stderr
    assert len(result.stderr) - len(repr(text)) <= 76, result.stderr  # 80 columns for 'abc'
    assert result.stdout == ""


def test_read_data_and_a_subset_together_are_a_usage_error(repo: Repository) -> None:
    result = run_cli("--repo", repo.location, "check", "--read-data", "--read-data-subset", "1/2")
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr


# --- what is read --------------------------------------------------------------------------------


def test_n_of_m_reads_only_its_group_and_the_groups_cover_every_pack_once(
    many_packs: tuple[str, Path],
) -> None:
    url, root = many_packs
    packs = pack_names(root)
    assert len(packs) >= 12  # enough that each of three groups is very likely non-empty
    read_counts: Counter[str] = Counter()
    for part in (1, 2, 3):
        reads: Reads = []
        with open_counting(url, reads) as repo:
            result = repo.check(read_subset=f"{part}/3")
        assert result.ok, result.errors
        read = whole_pack_reads(reads)
        expected = {name for name in packs if in_part(name, part, 3)}
        assert set(read) == expected == set(result.packs_read)
        assert len(read) == len(expected)  # each chosen pack is read once, whole
        assert result.bytes_read == sum(packs[name] for name in expected)
        assert result.read_subset == f"{part}/3" and not result.read_data
        read_counts.update(read)
    assert read_counts == Counter(dict.fromkeys(packs, 1))
    # The same group is the same packs every time: chosen by pack id, not at random.
    again: Reads = []
    with open_counting(url, again) as repo:
        repo.check(read_subset="2/3")
    assert set(whole_pack_reads(again)) == {n for n in packs if in_part(n, 2, 3)}


def test_a_structural_check_reads_no_pack_and_read_data_reads_all(
    many_packs: tuple[str, Path],
) -> None:
    url, root = many_packs
    reads: Reads = []
    with open_counting(url, reads) as repo:
        assert repo.check().ok
    assert whole_pack_reads(reads) == []
    reads.clear()
    with open_counting(url, reads) as repo:
        assert repo.check(read_data=True).ok
    assert sorted(whole_pack_reads(reads)) == sorted(pack_names(root))


@pytest.mark.parametrize("percent", [1, 25, 50, 100])
def test_a_percentage_reads_that_share_of_the_packs_at_random(
    many_packs: tuple[str, Path], percent: int
) -> None:
    url, root = many_packs
    total = len(pack_names(root))
    chosen = []
    for _ in range(2):
        reads: Reads = []
        with open_counting(url, reads) as repo:
            result = repo.check(read_subset=f"{percent}%")
        read = whole_pack_reads(reads)
        assert len(read) == len(set(read)) == -(-total * percent // 100)  # at least one pack
        assert set(read) == set(result.packs_read)
        chosen.append(set(read))
    if percent == 50:
        assert chosen[0] != chosen[1] or total < 8  # at random: two runs differ (C(40,20))


def test_a_size_reads_random_packs_until_it_is_reached(many_packs: tuple[str, Path]) -> None:
    url, root = many_packs
    packs = pack_names(root)
    target = sum(packs.values()) // 3
    reads: Reads = []
    with open_counting(url, reads) as repo:
        result = repo.check(read_subset=str(target))
    read = whole_pack_reads(reads)
    size = sum(packs[name] for name in read)
    assert len(read) == len(set(read)) and result.bytes_read == size
    assert size >= target and size - max(packs[name] for name in read) < target
    reads.clear()
    with open_counting(url, reads) as repo:
        repo.check(read_subset="1T")  # more than there is: everything, once
    assert sorted(whole_pack_reads(reads)) == sorted(packs)


# --- damage --------------------------------------------------------------------------------------


def flip_in_pack(root: Path, name: str) -> None:
    (path,) = (root / "data").rglob(name)
    body = bytearray(path.read_bytes())
    body[len(body) // 3] ^= 0xFF
    path.write_bytes(bytes(body))


def test_damage_in_a_chosen_pack_is_found_and_outside_it_is_not_read(
    many_packs: tuple[str, Path],
) -> None:
    url, root = many_packs
    packs = data_only_packs(url)
    inside = next(name for name in packs if in_part(name, 1, 2))
    outside = next(name for name in packs if in_part(name, 2, 2))
    flip_in_pack(root, outside)
    reads: Reads = []
    with open_counting(url, reads) as repo:
        unharmed = repo.check(read_subset="1/2")
    assert unharmed.ok, unharmed.errors
    assert outside not in whole_pack_reads(reads)
    with open_counting(url, []) as repo:
        found = repo.check(read_subset="2/2")
    assert not found.ok and any(outside in problem for problem in found.errors)
    flip_in_pack(root, inside)
    with open_counting(url, []) as repo:
        found = repo.check(read_subset="1/2")
    assert not found.ok and any(inside in problem for problem in found.errors)
    assert not any(outside in problem for problem in found.errors)


def test_what_a_full_check_recorded_about_unread_packs_is_kept(
    many_packs: tuple[str, Path],
) -> None:
    url, root = many_packs
    packs = data_only_packs(url)
    outside = next(name for name in packs if in_part(name, 2, 2))
    flip_in_pack(root, outside)
    with open_counting(url, []) as repo:
        assert not repo.check(read_data=True).ok
        recorded = load_damage(repo.cache_dir)
        assert bytes.fromhex(outside) in set().union(*recorded.values())
        subset = repo.check(read_subset="1/2")
        assert subset.ok, subset.errors  # did not look at the damaged pack ...
        assert load_damage(repo.cache_dir) == recorded  # ... so what is known of it stays


# --- the command line ----------------------------------------------------------------------------


def test_cli_json_says_which_subset_was_read(
    many_packs: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, root = many_packs
    reads: Reads = []
    monkeypatch.setattr("stcore.cli.context.make_plugin_manager", lambda: counting_host(reads))
    result = CliRunner().invoke(
        cli, ["--repo", url, "check", "--read-data-subset", "2/4", "--json"]
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    packs = pack_names(root)
    expected = sorted(name for name in packs if in_part(name, 2, 4))
    assert document["read_subset"] == "2/4" and document["read_data"] is False
    assert document["packs_read"] == expected == sorted(whole_pack_reads(reads))
    assert document["bytes_read"] == sum(packs[name] for name in expected)
    assert document["ok"] is True and document["packs"] == len(packs)


def test_cli_text_names_the_subset_and_fits_80_columns(repo: Repository, tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "a.bin").write_bytes(os.urandom(50_000))
    repo.backup(stcore.sources_for_paths([str(source)]))
    result = run_cli("--repo", repo.location, "check", "--read-data-subset", "100%")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("read data subset 100%: 1 of 1 pack")
    assert lines[-1].endswith("no errors found") and all(len(line) <= 80 for line in lines)
