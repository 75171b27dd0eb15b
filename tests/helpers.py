"""Helpers shared by several test files: encrypted repositories, one-line CLI errors, damage."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import stcore
from stcore.repo.keys import KdfParams
from stcore.repository import Repository

CHEAP = KdfParams(memory_kib=1024, iterations=1, lanes=1)
PASSWORD = "correct horse battery staple"


def init_encrypted(
    path: Path, encryption: str = "aes-256-gcm", password: str = PASSWORD, **kwargs: object
) -> Repository:
    return stcore.init_repository(
        str(path), encryption=encryption, password=password, kdf=CHEAP, **kwargs
    )


def open_encrypted(path: Path | str, password: str = PASSWORD) -> Repository:
    return stcore.open_repository(str(path), password=password)


def listing(root: Path) -> dict[str, tuple[int, int]]:
    """path -> (size, mtime_ns) of everything below ``root``, directories included."""
    return {
        str(p.relative_to(root)): (p.lstat().st_size, p.lstat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
    }


def cli_no_tty(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`stcore` with stdin not a terminal, as under cron or CI."""
    return subprocess.run(
        [sys.executable, "-m", "stcore.cli", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def backup_small(repo: Repository, tmp_path: Path) -> Path:
    source = tmp_path / "src"
    source.mkdir()
    (source / "a.txt").write_bytes(os.urandom(200_000))
    (source / "b.txt").write_text("bee")
    repo.backup(stcore.sources_for_paths([str(source)]))
    return source


def only_pack(repo: Repository) -> Path:
    (pack,) = [info.key for info in repo.backend.list("data/")]
    return Path(repo.location) / pack


def rewrite_config(repo_dir: Path, **changes: object) -> None:
    """Change fields of a local repository's config and give it a valid checksum again, as a
    writer of that config would (a newer stcore, or someone editing it on purpose)."""
    import json

    import blake3

    path = repo_dir / "config"
    document = json.loads(path.read_text())
    document.pop("checksum", None)
    document.update(changes)
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    document["checksum"] = blake3.blake3(canonical).hexdigest()
    path.write_text(json.dumps(document))


def flip_bit(path: Path, bit: int) -> None:
    body = bytearray(path.read_bytes())
    body[bit // 8] ^= 1 << (bit % 8)
    path.write_bytes(bytes(body))
