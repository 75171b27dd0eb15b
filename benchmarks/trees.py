"""What a snapshot's trees cost: decoding and encoding them, reading them, and check's walk.

    python benchmarks/trees.py REPO [--against CHECKOUT] [--rounds 3] [--repeat 5]

``REPO`` is an existing local repository (for instance one ``run.py --dataset linux`` made, or
``stcore backup`` of ``.cache/bench-linux/linux-source-6.1``); its newest snapshot is read.
Each round measures in a fresh interpreter, and with ``--against`` a second interpreter runs
the same measurements with ``CHECKOUT`` (another commit's working tree, for instance a
``git worktree``) first on ``PYTHONPATH``, the two alternating round by round. Reported, as
medians of ``--repeat`` inside each round:

- ``decode``: ``decode_tree`` of every tree's plaintext (read beforehand);
- ``encode``: ``encode_tree`` of every decoded tree (what every backup does for each folder);
- ``read_trees``: ``Store.read_trees`` of the snapshot's roots (read, unseal, decode);
- ``read each``: ``Store.read_tree`` of every tree in turn, one read apiece (as check walks);
- ``check walk``: ``check``'s walk over every snapshot's trees (``_check_snapshots``);
- ``held MiB``: what ``tracemalloc`` sees the decoded trees hold.

Whole commands (``check``, ``restore``) are timed by ``run.py``; this isolates their tree
phase, which a noisy host hides inside a whole command's spread.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parents[1]


def _encode_all(encode: Any, trees: list[Any]) -> list[bytes]:
    return [encode(nodes) for nodes in trees]


def measure(repo_path: str, repeat: int) -> dict[str, Any]:
    import st_local

    import stcore
    from stcore.repo import check
    from stcore.repo.format import decode_tree, encode_tree

    def median_time(action: Any) -> float:
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            action()
            times.append(time.perf_counter() - started)
        return statistics.median(times)

    with (
        tempfile.TemporaryDirectory() as cache,
        stcore.open_repository(repo_path, cache_root=cache) as repo,
    ):
        store = repo.store
        snapshot_ids = store.snapshot_ids()
        manifest = store.load_manifest(snapshot_ids[-1])
        roots = [summary.root for summary in manifest.sources.values()]
        tree_ids = list(store.read_trees(*roots))
        plaintexts = [store.read_blob(tree_id) for tree_id in tree_ids]
        tracemalloc.start()
        trees = [decode_tree(data) for data in plaintexts]
        held = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        entries = sum(map(len, trees))
        encoded = median_time(functools.partial(_encode_all, encode_tree, trees))
        del trees
        index = store.load_index(cached=False)
        store.set_index(index)
        return {
            "stcore": str(Path(stcore.__file__).parent),
            "st_local": str(Path(st_local.__file__).parent),
            "trees": len(tree_ids),
            "entries": entries,
            "decode": median_time(lambda: [decode_tree(data) for data in plaintexts]),
            "encode": encoded,
            "read_trees": median_time(lambda: store.read_trees(*roots)),
            "read each": median_time(lambda: [store.read_tree(tree) for tree in tree_ids]),
            "check walk": median_time(lambda: check._check_snapshots(store, snapshot_ids, index)),
            "held MiB": held / 2**20,
        }


def child(repo: str, repeat: int, checkout: str | None) -> dict[str, Any]:
    env = dict(os.environ)
    root = Path(checkout or HERE)
    path = [str(root), str(root / "plugins" / "st_local" / "src")]  # the local backend too
    env["PYTHONPATH"] = os.pathsep.join([*path, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    argv = [sys.executable, __file__, repo, "--child", "--repeat", str(repeat)]
    output = subprocess.run(argv, env=env, check=True, capture_output=True, text=True).stdout
    result: dict[str, Any] = json.loads(output)
    for name in ("stcore", "st_local"):
        if not Path(result[name]).resolve().is_relative_to(root.resolve()):
            raise SystemExit(f"the child imported {result[name]}, not {name} from {root}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("repo")
    parser.add_argument("--against", help="another checkout, measured alternately")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.repo, args.repeat)))
        return
    sides = {"this checkout": None}
    if args.against:
        sides = {"against": args.against, **sides}
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in sides}
    for number in range(args.rounds):
        for name, checkout in sides.items():
            rounds[name].append(child(args.repo, args.repeat, checkout))
            print(f"round {number + 1}, {name}: done", file=sys.stderr)
    first = next(iter(rounds.values()))[0]
    print(f"{first['trees']:,} trees, {first['entries']:,} entries; medians of {args.repeat}")
    print("| measured | " + " | ".join(sides) + " |")
    print("|---|" + "---|" * len(sides))
    measured = ("decode", "encode", "read_trees", "read each", "check walk", "held MiB")
    for key in measured:
        unit = "" if key == "held MiB" else "s"
        cells = [
            " / ".join(f"{run[key]:.2f}" for run in rounds[name]) + (f" {unit}" if unit else "")
            for name in sides
        ]
        print(f"| {key} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
