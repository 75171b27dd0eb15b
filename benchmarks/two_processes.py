"""What two processes would buy a backup of the Linux tree, and what they would cost.

    python benchmarks/two_processes.py [--repeat 3] [--work .cache/two-work]

Issue 17 asks for a first backup in half restic's time, which needs both cores, and for peak
RSS at or below restic's. Python runs the per-file work on one thread (a second thread made it
slower: see README.md), so the way to both cores is a second process. Before building one, this
measures the most it could buy: the tree is split in two halves of about the same work (its
top-level folders, and a folder holding a third of the files or more by its own entries,
balanced by an estimate from file count and bytes), and each half is backed up by its own
``stcore backup`` process into its own repository, both at once. No merging, no hand-over, no
shared index. Each part of a half is a source of its own (a files source's excludes cannot name
a top-level entry alone), so the same parts are also backed up by one process ("one process,
same parts"): the pair against that run is the gain of splitting, each source's own cost
(its files-cache load, its root tree) paid alike.

Beside them, in the same repetition, in an order that turns from one repetition to the next:
one ``stcore backup`` of the whole tree and one ``restic backup``. For the first and a
no-change backup it reports wall time (the pair's: until both end) and peak RSS (the pair's:
the sum of the two processes' peaks, which may not coincide; an upper bound on what the
machine held at once), medians of ``--repeat`` runs, with ratios against restic's in the same
repetition.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from run import BYTECODE, STCORE, Restic, linux_tree, load_average

#: seconds per file and bytes per second for the split's estimate of a folder's work (the
#: first backup's rough per-file cost and throughput on this machine; only the balance matters)
PER_FILE = 150e-6
PER_SECOND = 2e8


def weigh(path: Path) -> tuple[int, int]:
    """Files and bytes under ``path`` (itself when a file); symbolic links count as files."""
    if not path.is_dir() or path.is_symlink():
        return 1, path.lstat().st_size
    files = size = 0
    for folder, _, names in os.walk(path):
        for name in names:
            files += 1
            size += os.lstat(os.path.join(folder, name)).st_size
    return files, size


def split(tree: Path) -> tuple[list[Path], list[Path]]:
    """Two lists of paths under ``tree`` that cover it, with about the same estimated work."""
    total_files, _ = weigh(tree)
    parts: list[tuple[float, Path]] = []
    pending = sorted(tree.iterdir())
    while pending:
        path = pending.pop()
        files, size = weigh(path)
        if path.is_dir() and not path.is_symlink() and files * 3 >= total_files:
            pending.extend(sorted(path.iterdir()))  # too big to be one part: its entries are
            continue
        parts.append((files * PER_FILE + size / PER_SECOND, path))
    halves: tuple[list[Path], list[Path]] = ([], [])
    loads = [0.0, 0.0]
    for work, path in sorted(parts, reverse=True):  # largest first, to the lighter half
        lighter = 0 if loads[0] <= loads[1] else 1
        halves[lighter].append(path)
        loads[lighter] += work
    return halves


def write_config(paths: list[Path], tree: Path, target: Path) -> None:
    """A stcore.toml with one files source per path, named after its place in the tree."""
    lines = []
    for path in sorted(paths):
        name = str(path.relative_to(tree)).replace("/", "__")
        lines += [
            f"[sources.{json.dumps(name)}]",
            'type = "files"',
            f"path = {json.dumps(str(path))}",
            "",
        ]
    target.write_text("\n".join(lines))


def wait_all(argvs: list[tuple[list[str], dict[str, str]]], log: Path) -> tuple[float, int]:
    """Run the commands at once (their errors to ``log``); wall seconds until all end, and the
    sum of their peak RSS. One that fails stops the others and the benchmark."""
    os.sync()
    started = time.perf_counter()
    with log.open("ab") as errors:
        processes = [
            subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=errors)
            for argv, env in argvs
        ]
    peak = 0
    try:
        for process in processes:
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
            if process.returncode != 0:
                raise RuntimeError(f"{process.args!r} failed: see {log}")
            peak += usage.ru_maxrss * 1024
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
                process.wait()
    return time.perf_counter() - started, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path(".cache/two-work"))
    args = parser.parse_args()
    tree = Path(str(linux_tree("prepare")["tree"]))
    subprocess.run([sys.executable, str(BYTECODE)], check=True, stdout=sys.stderr)
    halves = split(tree)
    print(f"load average at start: {load_average()}", file=sys.stderr)
    runs: dict[tuple[str, str], list[tuple[float, int]]] = {}
    for repetition in range(args.repeat):
        work = args.work.absolute() / f"run-{repetition}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        stcore: dict[str, dict[str, str]] = {}
        for name in ("half-a", "half-b", "parts", "whole"):
            stcore[name] = {
                **os.environ,
                "STCORE_REPO": str(work / f"repo-{name}"),
                "STCORE_CACHE_DIR": str(work / f"cache-{name}"),
            }
            subprocess.run(
                [*STCORE, "init"], env=stcore[name], check=True, stdout=subprocess.DEVNULL
            )
        for half, paths in zip(("half-a", "half-b"), halves, strict=True):
            write_config(paths, tree, work / f"{half}.toml")
        write_config([*halves[0], *halves[1]], tree, work / "parts.toml")
        restic = Restic(work)
        subprocess.run(restic.init(), env=restic.env, check=True, stdout=subprocess.DEVNULL)
        pair = [
            ([*STCORE, "--config", str(work / f"{half}.toml"), "backup"], stcore[half])
            for half in ("half-a", "half-b")
        ]
        for phase in ("first backup", "no-change backup"):
            parts = [*STCORE, "--config", str(work / "parts.toml"), "backup"]
            commands = list(
                {
                    "two processes": pair,
                    "one process, same parts": [(parts, stcore["parts"])],
                    "one process": [([*STCORE, "backup", str(tree)], stcore["whole"])],
                    "restic": [(["restic", "backup", "--quiet", str(tree)], restic.env)],
                }.items()
            )
            turn = repetition % len(commands)  # no command always first after the copy
            for label, argvs in commands[turn:] + commands[:turn]:
                runs.setdefault((phase, label), []).append(
                    wait_all(argvs, work.parent / "errors.log")
                )
                print(f"  run {repetition + 1}: {phase}, {label}", file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)
    print(f"Linux tree {tree}, {args.repeat} repetitions, medians; ratios against restic")
    print()
    labels = ("two processes", "one process, same parts", "one process", "restic")
    print(f"| phase | {' | '.join(labels)} |")
    print("|---|" + "---|" * len(labels))
    for phase in ("first backup", "no-change backup"):
        cells = []
        peer = runs[(phase, "restic")]
        for label in labels:
            ours = runs[(phase, label)]
            wall = statistics.median(t for t, _ in ours)
            rss = statistics.median(m for _, m in ours) / 2**20
            if label == "restic":
                cells.append(f"{wall:.2f} s, {rss:.0f} MiB")
                continue
            time_ratio = statistics.median(o[0] / p[0] for o, p in zip(ours, peer, strict=True))
            rss_ratio = statistics.median(o[1] / p[1] for o, p in zip(ours, peer, strict=True))
            cells.append(f"{wall:.2f} s, {rss:.0f} MiB ({time_ratio:.2f}x / {rss_ratio:.2f}x)")
        print(f"| {phase} | {' | '.join(cells)} |")
    print()
    print(f"halves: {len(halves[0])} and {len(halves[1])} paths")
    print(f"load average at the end: {load_average()}", file=sys.stderr)


if __name__ == "__main__":
    main()
