"""A real source tree for the benchmarks: Debian's Linux 6.1 source, cached, copied and mutated.

    python benchmarks/linux_tree.py prepare            # install + extract once, print the tree
    python benchmarks/linux_tree.py copy DEST          # a private copy for one repetition
    python benchmarks/linux_tree.py mutate DIR         # rewrite ~1% of the files, add/delete a few

The tarball comes from the distribution package `linux-source-6.1` (installed with
`apt-get install -y linux-source` when it is missing and we are root) and is extracted once into
`.cache/bench-linux/` inside this checkout (git-ignored, never the system temp folder); later runs
reuse the extracted tree. Same seed, same change: every tool backs up the same bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent
CACHE = CHECKOUT / ".cache" / "bench-linux"
TARBALL = Path("/usr/src/linux-source-6.1.tar.xz")
TREE = CACHE / "linux-source-6.1"
MANIFEST = CACHE / "manifest.json"  # written last: its presence means the extraction finished


class Unavailable(Exception):
    """The tree cannot be provided on this machine; the message says why and what to do."""


def _install() -> None:
    if os.geteuid() != 0:
        raise Unavailable(
            f"{TARBALL} is missing and installing it needs root: "
            "run `apt-get install --no-install-recommends linux-source` (Debian 12) as root"
        )
    # Without --no-install-recommends apt also installs bison, flex, linux-perf... and upgrades
    # linux-libc-dev: nothing the benchmark needs.
    argv = ["apt-get", "install", "-y", "--no-install-recommends", "linux-source"]
    print(f"{TARBALL} is missing: {' '.join(argv)}", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    done = subprocess.run(argv, env=env, check=False)
    if done.returncode != 0 or not TARBALL.is_file():
        raise Unavailable(
            f"apt-get install linux-source failed (exit {done.returncode}) or did not provide "
            f"{TARBALL}; is this Debian 12 with its package lists up to date (apt-get update)?"
        )


def _package_version() -> str:
    done = subprocess.run(
        ["dpkg-query", "-S", str(TARBALL)], capture_output=True, text=True, check=False
    )
    package = done.stdout.split(":")[0].strip() if done.returncode == 0 else ""
    if not package:
        return "unknown"
    version = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", package],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return f"{package} {version}"


def _walk(root: Path) -> list[Path]:
    """Regular files (no symlinks) under root, in a fixed order."""
    found: list[Path] = []
    for top, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            path = Path(top) / name
            if not path.is_symlink() and path.is_file():
                found.append(path)
    return found


def prepare() -> dict[str, object]:
    """The extracted tree's manifest (path, package, file count, bytes), extracting it if needed."""
    if MANIFEST.is_file() and TREE.is_dir():
        manifest: dict[str, object] = json.loads(MANIFEST.read_text())
        return manifest
    if not TARBALL.is_file():
        _install()
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = CACHE / "extracting"
    shutil.rmtree(partial, ignore_errors=True)
    shutil.rmtree(TREE, ignore_errors=True)
    partial.mkdir()
    print(f"extracting {TARBALL} into {CACHE} (once)", file=sys.stderr)
    subprocess.run(["tar", "-xf", str(TARBALL), "-C", str(partial)], check=True)
    (partial / TREE.name).rename(TREE)
    partial.rmdir()
    files = _walk(TREE)
    manifest = {
        "tree": str(TREE),
        "package": _package_version(),
        "files": len(files),
        "bytes": sum(p.stat().st_size for p in files),
    }
    MANIFEST.write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def copy(dest: Path) -> None:
    """A private copy of the cached tree at dest (reflinked where the file system can; never
    hard links, so mutating the copy can never change the cache)."""
    prepare()
    if dest.exists():
        raise FileExistsError(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-a", "--reflink=auto", str(TREE), str(dest)], check=True)


def _replace(path: Path, data: bytes) -> None:
    """Write data to path as a new inode (temp file + rename, mode kept): whatever the copy
    might share with the cache, an edit never writes through it."""
    temporary = path.with_name(path.name + ".bench-tmp")
    temporary.write_bytes(data)
    os.chmod(temporary, path.stat().st_mode & 0o7777)
    os.replace(temporary, path)


def mutate(root: Path, seed: int = 3) -> dict[str, int]:
    """A deterministic day of edits: 1% of the files get one inserted line (the rest of each
    file is unchanged, as a patch would leave it), 10 new files are added, 10 are deleted."""
    rng = random.Random(seed)
    files = _walk(root)
    edited = rng.sample(files, max(1, len(files) // 100))
    for number, path in enumerate(edited):
        data = path.read_bytes()
        lines = data.split(b"\n")
        at = rng.randrange(len(lines) + 1)
        lines.insert(at, f"/* benchmark edit {number}: {rng.getrandbits(64):016x} */".encode())
        _replace(path, b"\n".join(lines))
    remaining = sorted(set(files) - set(edited))
    deleted = rng.sample(remaining, 10)
    for path in deleted:
        path.unlink()
    added = root / "bench-added"
    added.mkdir(exist_ok=True)
    for number in range(10):
        text = "".join(
            f"int bench_{number}_{k}(void) {{ return {rng.getrandbits(31)}; }}\n"
            for k in range(rng.randrange(100, 2000))
        )
        (added / f"added-{number}.c").write_text(text)
    return {"edited": len(edited), "deleted": len(deleted), "added": 10}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=["prepare", "copy", "mutate"])
    parser.add_argument("root", type=Path, nargs="?")
    args = parser.parse_args()
    try:
        if args.command == "prepare":
            print(json.dumps(prepare(), indent=1))
        elif args.root is None:
            parser.error(f"{args.command} needs a directory")
        elif args.command == "copy":
            copy(args.root)
        else:
            print(json.dumps(mutate(args.root)))
    except Unavailable as error:
        sys.exit(f"linux dataset unavailable: {error}")


if __name__ == "__main__":
    main()
