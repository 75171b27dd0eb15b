"""Measure stcore against restic and borg (when installed) on the same dataset, same run.

    python benchmarks/run.py [--dataset generated|linux] [--scale 0.25] [--repeat 3] [--cold]
                             [--work DIR] [--profile DIR]

For each tool and repetition: first backup, no-change backup, incremental backup (after
`dataset.py mutate`, or `linux_tree.py mutate` on a private copy of the Linux source tree),
full restore, and check with full data read. Reports medians of wall time, CPU time and peak
RSS (the largest process's, from wait4), plus repository sizes, as a Markdown table with
ratios against restic, under the command line, the dataset and the page cache state (warm, or
cold with ``--cold``: dropped before every measured command, where root and /proc allow it).
Tools are interleaved within each repetition so machine noise hits all of them alike.
``--profile DIR`` adds one more, unmeasured run of stcore alone with every phase under
pyinstrument, and writes each phase's profile to ``DIR/<phase>.txt`` (call tree),
``DIR/<phase>-flat.txt`` (functions by own time) and ``DIR/<phase>.pyisession``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

DATASET = Path(__file__).resolve().parent / "dataset.py"
LINUX_TREE = Path(__file__).resolve().parent / "linux_tree.py"
DROP_CACHES = Path("/proc/sys/vm/drop_caches")
BYTECODE = Path(__file__).resolve().parent.parent / "testsupport" / "bytecode.py"

STCORE = [sys.executable, "-m", "stcore.cli"]
PHASES = ["first backup", "no-change backup", "incremental backup", "restore", "check --read-data"]


def dataset(*args: str) -> None:
    # In a child process: the runner itself stays small, because a forked child's peak RSS
    # starts from its parent's size and would otherwise inflate every tool's figure.
    subprocess.run([sys.executable, str(DATASET), *args], check=True)


def linux_tree(*args: str) -> dict[str, object]:
    """`linux_tree.py` in a child (same reason: its file list stays out of the runner); exits
    with its one-line message when the tree cannot be provided here."""
    done = subprocess.run(
        [sys.executable, str(LINUX_TREE), *args], stdout=subprocess.PIPE, text=True, check=False
    )
    if done.returncode != 0:
        sys.exit(done.returncode)
    result: dict[str, object] = json.loads(done.stdout) if done.stdout.strip() else {}
    return result


def prepare_data(args: argparse.Namespace, data: Path) -> None:
    """The dataset a repetition starts from, at data (a fresh, private copy)."""
    if args.dataset == "linux":
        linux_tree("copy", str(data))
    else:
        dataset("generate", str(data), "--scale", str(args.scale))


def mutate_data(args: argparse.Namespace, data: Path) -> None:
    if args.dataset == "linux":
        args.mutation = linux_tree("mutate", str(data))
    else:
        dataset("mutate", str(data))


def drop_caches() -> None:
    DROP_CACHES.write_text("3\n")


def cold_unavailable() -> str | None:
    """Why the page cache cannot be dropped here, or None when it can (it was just dropped)."""
    if os.geteuid() != 0:
        return f"writing {DROP_CACHES} needs root"
    os.sync()
    try:
        drop_caches()
    except OSError as error:
        return f"cannot write {DROP_CACHES}: {error.strerror or error}"
    return None


COLD = False  # set by main() once dropping the page cache is known to work


def measure(argv: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds and peak RSS (bytes) of one command."""
    # Dirty pages left by the dataset generator or the previous tool would otherwise be written
    # back during this command and billed to whichever tool happens to run first.
    os.sync()
    if COLD:
        drop_caches()  # after sync: only clean pages can be dropped
    started = time.perf_counter()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(
            f"{argv} failed: {process.stderr.read().decode() if process.stderr else ''}"
        )
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024


def tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class Tool:
    name = ""

    def __init__(self, work: Path) -> None:
        self.repo = work / f"repo-{self.name}"
        self.env = {**os.environ}

    def commands(self, data: Path, target: Path) -> dict[str, list[str]]:
        raise NotImplementedError

    def init(self) -> list[str]:
        raise NotImplementedError


class Stcore(Tool):
    name = "stcore"

    def __init__(self, work: Path) -> None:
        super().__init__(work)
        self.env.update(STCORE_REPO=str(self.repo), STCORE_CACHE_DIR=str(work / "stcore-cache"))

    def init(self) -> list[str]:
        return [*STCORE, "init"]

    def commands(self, data: Path, target: Path) -> dict[str, list[str]]:
        backup = [*STCORE, "backup", str(data)]
        return {
            "first backup": backup,
            "no-change backup": backup,
            "incremental backup": backup,
            "restore": [*STCORE, "restore", "latest", "--target", str(target)],
            "check --read-data": [*STCORE, "check", "--read-data"],
        }


class StcoreEncrypted(Stcore):
    """stcore with AES-256-GCM: the cost of encryption, measured beside the plain run."""

    name = "stcore-aes"

    def __init__(self, work: Path) -> None:
        super().__init__(work)
        self.env.update(STCORE_PASSWORD="benchmark")

    def init(self) -> list[str]:
        return [*STCORE, "init", "--encrypt"]


class Restic(Tool):
    name = "restic"

    def __init__(self, work: Path) -> None:
        super().__init__(work)
        self.env.update(
            RESTIC_REPOSITORY=str(self.repo),
            RESTIC_PASSWORD="benchmark",
            RESTIC_CACHE_DIR=str(work / "restic-cache"),
        )

    def init(self) -> list[str]:
        return ["restic", "init", "--repository-version", "2"]

    def commands(self, data: Path, target: Path) -> dict[str, list[str]]:
        backup = ["restic", "backup", "--quiet", str(data)]
        return {
            "first backup": backup,
            "no-change backup": backup,
            "incremental backup": backup,
            "restore": ["restic", "restore", "latest", "--target", str(target)],
            "check --read-data": ["restic", "check", "--read-data"],
        }


class Borg(Tool):
    name = "borg"

    def __init__(self, work: Path) -> None:
        super().__init__(work)
        self.env.update(
            BORG_REPO=str(self.repo),
            BORG_PASSPHRASE="benchmark",
            BORG_BASE_DIR=str(work / "borg-base"),
        )

    def init(self) -> list[str]:
        return ["borg", "init", "--encryption", "none"]

    def commands(self, data: Path, target: Path) -> dict[str, list[str]]:
        stamp = "{now:%Y%m%dT%H%M%S.%f}"
        backup = ["borg", "create", "--compression", "zstd,3", f"::{stamp}", str(data)]
        return {
            "first backup": backup,
            "no-change backup": backup,
            "incremental backup": backup,
            "restore": [
                "sh",
                "-c",
                f'mkdir -p "{target}" && cd "{target}" && borg extract '
                f'"::$(borg list --last 1 --short)"',
            ],
            "check --read-data": ["borg", "check", "--verify-data"],
        }


def main() -> None:
    global COLD
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--dataset",
        choices=["generated", "linux"],
        default="generated",
        help="generated mix (dataset.py) or the Linux 6.1 source tree (linux_tree.py)",
    )
    parser.add_argument(
        "--scale", type=float, help="generated dataset's scale (default 1.0 = ~1 GiB)"
    )
    parser.add_argument(
        "--cold",
        action="store_true",
        help="drop the page cache before every measured command (root, writable /proc)",
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--peers",
        default="restic,borg",
        help="comma-separated peers to measure when installed (default: restic,borg)",
    )
    parser.add_argument("--work", type=Path, default=Path("bench-data"))
    parser.add_argument(
        "--encrypt", action="store_true", help="also measure stcore with AES-256-GCM"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="after measuring, profile each stcore phase with pyinstrument into DIR",
    )
    args = parser.parse_args()
    if args.dataset == "linux" and args.scale is not None:
        parser.error("--scale applies to the generated dataset only")
    if args.scale is None:
        args.scale = 1.0
    args.tree = linux_tree("prepare") if args.dataset == "linux" else {}
    args.mutation = {}
    args.cold_skipped = None
    if args.cold:
        args.cold_skipped = cold_unavailable()
        if args.cold_skipped:
            print(f"cold mode skipped ({args.cold_skipped}): running warm", file=sys.stderr)
        COLD = args.cold_skipped is None
    print(f"load average at start: {load_average()}", file=sys.stderr)
    # Bytecode first, as an installed wheel has it: where PYTHONDONTWRITEBYTECODE is set, every
    # stcore command would compile the package again while it is timed. In a child that
    # resolves `stcore` as the timed `python -m stcore.cli` will (this folder first).
    subprocess.run([sys.executable, str(BYTECODE)], check=True, stdout=sys.stderr)
    tools: list[type[Tool]] = [Stcore, StcoreEncrypted] if args.encrypt else [Stcore]
    wanted = {name.strip() for name in args.peers.split(",") if name.strip()}
    unknown = wanted - {"restic", "borg"}
    if unknown:
        parser.error(f"--peers: unknown peer {', '.join(sorted(unknown))} (restic, borg)")
    tools += [t for t in (Restic, Borg) if t.name in wanted and shutil.which(t.name)]
    results: dict[tuple[str, str], list[tuple[float, float, int]]] = defaultdict(list)
    sizes: dict[tuple[str, str], list[int]] = defaultdict(list)
    for repetition in range(args.repeat):
        work = args.work.absolute() / f"run-{repetition}"
        shutil.rmtree(work, ignore_errors=True)
        data = work / "data"
        prepare_data(args, data)
        instances = [tool(work) for tool in tools]
        for tool in instances:
            measure(tool.init(), tool.env)
        for phase in PHASES:
            if phase == "incremental backup":
                mutate_data(args, data)
            for tool in instances:
                target = work / f"restore-{tool.name}"
                shutil.rmtree(target, ignore_errors=True)
                results[(tool.name, phase)].append(
                    measure(tool.commands(data, target)[phase], tool.env)
                )
                if phase == "first backup":
                    sizes[(tool.name, "after first backup")].append(tree_size(tool.repo))
                if phase == "incremental backup":
                    growth = tree_size(tool.repo) - sizes[(tool.name, "before incremental")][-1]
                    sizes[(tool.name, "incremental growth")].append(growth)
                if phase == "no-change backup":
                    sizes[(tool.name, "before incremental")].append(tree_size(tool.repo))
        print(
            f"repetition {repetition + 1}/{args.repeat} done; load average {load_average()}",
            file=sys.stderr,
        )
        shutil.rmtree(work, ignore_errors=True)
    report(tools, results, sizes, args)
    if args.profile:
        profile(args)


def profile(args: argparse.Namespace) -> None:
    """Each phase of one stcore run under pyinstrument (main thread; seal and write threads show
    up as the time it waits for them)."""
    work = args.work.absolute() / "profile"
    shutil.rmtree(work, ignore_errors=True)
    data = work / "data"
    prepare_data(args, data)
    tool = Stcore(work)
    measure(tool.init(), tool.env)
    args.profile.mkdir(parents=True, exist_ok=True)
    for phase in PHASES:
        if phase == "incremental backup":
            mutate_data(args, data)
        target = work / "restore"
        shutil.rmtree(target, ignore_errors=True)
        stem = args.profile / re.sub(r"[^a-z]+", "-", phase).strip("-")
        session = stem.with_suffix(".pyisession")
        argv = tool.commands(data, target)[phase][len(STCORE) :]
        pyinstrument = [sys.executable, "-m", "pyinstrument"]
        measure([*pyinstrument, "-o", str(session), "-m", "stcore.cli", *argv], tool.env)
        render_profile(session, stem)
        print(f"profile of {phase}: {stem}.txt, {stem}-flat.txt", file=sys.stderr)
    shutil.rmtree(work, ignore_errors=True)


def render_profile(session: Path, stem: Path) -> None:
    """The call tree (stem.txt) and the functions by their own time (stem-flat.txt)."""
    pyinstrument = [sys.executable, "-m", "pyinstrument", "--load", str(session), "-r", "text"]
    subprocess.run([*pyinstrument, "-o", f"{stem}.txt"], check=True)
    flat = subprocess.run(
        [*pyinstrument, "-p", "flat=true"], stdout=subprocess.PIPE, text=True, check=True
    ).stdout
    # pyinstrument's flat view counts each function's own time twice: in the function's line and
    # again, all functions together, in one "[self]" line (named after some file). Drop that one.
    lines = [line for line in flat.splitlines() if not re.match(r"\s*[\d.]+ \[self\] ", line)]
    Path(f"{stem}-flat.txt").write_text("\n".join(lines) + "\n")


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def describe_dataset(args: argparse.Namespace) -> str:
    if args.dataset == "generated":
        return f"generated, scale {args.scale}"
    tree, change = args.tree, args.mutation
    return (
        f"linux ({tree['package']}: {tree['files']:,} files, {tree['bytes'] / 2**30:.2f} GiB; "
        f"incremental: {change.get('edited', 0):,} files edited, "
        f"{change.get('added', 0)} added, {change.get('deleted', 0)} deleted)"
    )


def report(tools, results, sizes, args) -> None:  # type: ignore[no-untyped-def]
    names = [t.name for t in tools]
    if COLD:
        cache = "cold page cache (dropped before every command)"
    elif args.cold_skipped:
        cache = f"warm page cache (--cold skipped: {args.cold_skipped})"
    else:
        cache = "warm page cache"
    print(f"Command: `{shlex.join(sys.orig_argv)}`\n")
    print(
        f"Dataset {describe_dataset(args)}, {cache}, {args.repeat} repetitions, medians; "
        f"{os.cpu_count()} cores; {time.strftime('%Y-%m-%d')}.\n"
    )
    header = "| phase | " + " | ".join(f"{n} wall s | {n} CPU s | {n} peak RSS MiB" for n in names)
    if "restic" in names:
        header += " | stcore/restic wall | stcore/restic RSS"
    if "stcore-aes" in names:
        header += " | encrypted/plain wall"
    print(header + " |")
    print("|" + "---|" * header.count("|"))  # one per column: each column's cell starts a "|"
    for phase in PHASES:
        cells, medians = [], {}
        for name in names:
            runs = results[(name, phase)]
            wall = statistics.median(r[0] for r in runs)
            cpu = statistics.median(r[1] for r in runs)
            rss = statistics.median(r[2] for r in runs) / 2**20
            medians[name] = (wall, rss)
            cells += [f"{wall:.2f}", f"{cpu:.2f}", f"{rss:.0f}"]
        if "restic" in names:
            cells += [
                f"{medians['stcore'][0] / medians['restic'][0]:.2f}x",
                f"{medians['stcore'][1] / medians['restic'][1]:.2f}x",
            ]
        if "stcore-aes" in names:
            cells.append(f"{medians['stcore-aes'][0] / medians['stcore'][0]:.2f}x")
        print(f"| {phase} | " + " | ".join(cells) + " |")
    print()
    for what in ("after first backup", "incremental growth"):
        line = ", ".join(
            f"{n} {statistics.median(sizes[(n, what)]) / 2**20:.1f} MiB" for n in names
        )
        print(f"- repository size {what}: {line}")


if __name__ == "__main__":
    main()
