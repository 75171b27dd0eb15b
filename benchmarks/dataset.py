"""A deterministic mixed dataset shaped like an AI application's state, and a day of changes.

    python benchmarks/dataset.py generate DIR [--scale 1.0]   # ~0.9 GiB at scale 1.0
    python benchmarks/dataset.py mutate DIR                   # rewrite 2% of JSON, append logs...

Same seed, same bytes: runs on different machines or days compare like with like.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
from pathlib import Path

WORDS = [
    "signal",
    "trust",
    "model",
    "agent",
    "score",
    "latency",
    "token",
    "market",
    "risk",
    "alpha",
    "beta",
    "hedge",
]


def _document(rng: random.Random, i: int) -> dict[str, object]:
    return {
        "id": i,
        "agent": f"agent-{i % 97}",
        "state": rng.choice(WORDS),
        "scores": [round(rng.random(), 5) for _ in range(40)],
        "notes": " ".join(rng.choice(WORDS) for _ in range(60)),
    }


def generate(root: Path, scale: float = 1.0, seed: int = 1) -> None:
    rng = random.Random(seed)
    docs = root / "documents"
    logs = root / "logs"
    arrays = root / "arrays"
    dupes = root / "duplicates"
    for directory in (docs, logs, arrays, dupes):
        directory.mkdir(parents=True, exist_ok=True)
    for i in range(int(10_000 * scale)):  # ~190 MiB of JSON documents, ~19 KiB each
        body = json.dumps([_document(rng, i * 10 + k) for k in range(20)], indent=1)
        (docs / f"doc-{i:05d}.json").write_text(body)
    for i in range(int(24 * scale)):  # ~140 MiB of JSON-lines logs
        with open(logs / f"events-{i}.jsonl", "w") as log:
            for k in range(100_000):
                event = {"seq": k, "kind": rng.choice(WORDS), "value": rng.random()}
                log.write(json.dumps(event) + "\n")
    for i in range(int(14 * scale)):  # ~350 MiB of incompressible arrays
        (arrays / f"weights-{i}.npy").write_bytes(rng.randbytes(25 * 1024 * 1024))
    sample = (arrays / "weights-0.npy").read_bytes() if int(14 * scale) >= 1 else b"x"
    for i in range(4):  # ~100 MiB of exact duplicates
        (dupes / f"copy-{i}.npy").write_bytes(sample)
    db = sqlite3.connect(root / "state.db")
    db.execute("CREATE TABLE IF NOT EXISTS rows (id INTEGER PRIMARY KEY, agent TEXT, payload TEXT)")
    db.executemany(
        "INSERT INTO rows (agent, payload) VALUES (?, ?)",
        (
            (f"agent-{k % 97}", " ".join(rng.choice(WORDS) for _ in range(40)))
            for k in range(int(570_000 * scale))  # ~150 MiB
        ),
    )
    db.commit()
    db.close()


def mutate(root: Path, seed: int = 2) -> None:
    """A day of changes: 2% of documents rewritten, logs appended, 1% of rows updated,
    files added and deleted."""
    rng = random.Random(seed)
    docs = sorted((root / "documents").glob("*.json"))
    for path in rng.sample(docs, max(1, len(docs) // 50)):
        path.write_text(json.dumps([_document(rng, rng.randrange(10**6)) for _ in range(20)]))
    for path in sorted((root / "logs").glob("*.jsonl")):
        with open(path, "a") as log:
            for k in range(2000):
                log.write(json.dumps({"seq": -k, "kind": rng.choice(WORDS)}) + "\n")
    for path in rng.sample(docs, max(1, len(docs) // 200)):
        path.unlink(missing_ok=True)
    (root / "documents" / f"new-{rng.randrange(10**9)}.json").write_text(
        json.dumps(_document(rng, 0))
    )
    db = sqlite3.connect(root / "state.db")
    total = db.execute("SELECT COUNT(*) FROM rows").fetchone()[0]
    ids = rng.sample(range(1, total + 1), max(1, total // 100))
    db.executemany(
        "UPDATE rows SET payload = ? WHERE id = ?", ((str(rng.random()), i) for i in ids)
    )
    db.commit()
    db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=["generate", "mutate"])
    parser.add_argument("root", type=Path)
    parser.add_argument("--scale", type=float, default=1.0)
    args = parser.parse_args()
    if args.command == "generate":
        generate(args.root, args.scale)
    else:
        mutate(args.root)


if __name__ == "__main__":
    main()
