"""Measure stcore against restic and borg (when installed) on the same dataset, same run.

    python benchmarks/run.py [--scale 0.25] [--repeat 3] [--work DIR] [--profile DIR]

For each tool and repetition: first backup, no-change backup, incremental backup (after
`dataset.py mutate`), full restore, and check with full data read. Reports medians of wall time,
CPU time and peak RSS (of the tool's process tree, from wait4), plus repository sizes, as a
Markdown table with ratios against restic. Tools are interleaved within each repetition so
machine noise hits all of them alike. ``--profile DIR`` adds one more, unmeasured run of stcore
alone with every phase under pyinstrument, and writes each phase's profile to ``DIR/<phase>.txt``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

DATASET = Path(__file__).resolve().parent / "dataset.py"

STCORE = [sys.executable, "-m", "stcore.cli"]
PHASES = ["first backup", "no-change backup", "incremental backup", "restore", "check --read-data"]


def dataset(*args: str) -> None:
    # In a child process: the runner itself stays small, because a forked child's peak RSS
    # starts from its parent's size and would otherwise inflate every tool's figure.
    subprocess.run([sys.executable, str(DATASET), *args], check=True)


def measure(argv: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds and peak RSS (bytes) of one command."""
    # Dirty pages left by the dataset generator or the previous tool would otherwise be written
    # back during this command and billed to whichever tool happens to run first.
    os.sync()
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
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0, help="dataset scale (1.0 = ~1 GiB)")
    parser.add_argument("--repeat", type=int, default=3)
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
    tools: list[type[Tool]] = [Stcore, StcoreEncrypted] if args.encrypt else [Stcore]
    tools += [t for t in (Restic, Borg) if shutil.which(t.name)]
    results: dict[tuple[str, str], list[tuple[float, float, int]]] = defaultdict(list)
    sizes: dict[tuple[str, str], list[int]] = defaultdict(list)
    for repetition in range(args.repeat):
        work = args.work.absolute() / f"run-{repetition}"
        shutil.rmtree(work, ignore_errors=True)
        data = work / "data"
        dataset("generate", str(data), "--scale", str(args.scale))
        instances = [tool(work) for tool in tools]
        for tool in instances:
            measure(tool.init(), tool.env)
        for phase in PHASES:
            if phase == "incremental backup":
                dataset("mutate", str(data))
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
        print(f"repetition {repetition + 1}/{args.repeat} done", file=sys.stderr)
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
    dataset("generate", str(data), "--scale", str(args.scale))
    tool = Stcore(work)
    measure(tool.init(), tool.env)
    args.profile.mkdir(parents=True, exist_ok=True)
    for phase in PHASES:
        if phase == "incremental backup":
            dataset("mutate", str(data))
        target = work / "restore"
        shutil.rmtree(target, ignore_errors=True)
        output = args.profile / (re.sub(r"[^a-z]+", "-", phase).strip("-") + ".txt")
        argv = tool.commands(data, target)[phase][len(STCORE) :]
        profiler = [sys.executable, "-m", "pyinstrument", "-r", "text", "-o", str(output)]
        measure([*profiler, "-m", "stcore.cli", *argv], tool.env)
        print(f"profile of {phase}: {output}", file=sys.stderr)
    shutil.rmtree(work, ignore_errors=True)


def report(tools, results, sizes, args) -> None:  # type: ignore[no-untyped-def]
    names = [t.name for t in tools]
    print(
        f"Dataset scale {args.scale}, {args.repeat} repetitions, medians; "
        f"{os.cpu_count()} cores; {time.strftime('%Y-%m-%d')}.\n"
    )
    header = "| phase | " + " | ".join(f"{n} wall s | {n} CPU s | {n} peak RSS MiB" for n in names)
    if "restic" in names:
        header += " | stcore/restic wall | stcore/restic RSS"
    if "stcore-aes" in names:
        header += " | encrypted/plain wall"
    print(header + " |")
    print("|" + "---|" * (header.count("|") - 1))
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
