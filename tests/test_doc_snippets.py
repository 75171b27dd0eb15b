"""Every code snippet in README.md, docs/*.md and the plugins' READMEs runs, as written, top
to bottom.

Each page is one test. It runs in a sandbox of its own, the way a reader would follow it:

- the working directory is an application folder holding the data the pages back up
  (``data/ai_hub.json``, ``data/state.db``, ``data/models/``, ``data/logs/events.jsonl``,
  ``a.jsonl`` and ``b.jsonl`` beside it, ``data/tables/data.parquet``), with ``~``
  (``HOME``) beside it and ``~/app/data`` too;
  ``.venv`` is this checkout's, so ``source .venv/bin/activate`` works, and the ``stcore``
  command is on ``PATH``;
- a page whose code names ``s3://`` gets an S3 emulator (moto's server on loopback), found
  through ``AWS_ENDPOINT_URL`` as any boto3 program finds one, with the buckets the page names;
  one that names ``gs://`` gets fake-gcs-server, found through ``STORAGE_EMULATOR_HOST``;
- ``toml`` blocks that hold stcore tables are what the page asks the reader to put in
  ``stcore.toml``: they are merged into the sandbox's ``stcore.toml`` (a later block's keys win),
  which then has to load; other ``toml`` and ``json`` blocks have to parse;
- ``python`` blocks run in one interpreter per page, one namespace, so a later block may use
  what an earlier one defined (as in a notebook);
- ``bash``/``sh`` blocks run in ``bash -eo pipefail`` in the application folder, each block
  starting with the variables the page's earlier blocks exported (one terminal session per
  page); a command that runs until stopped (``stcore daemon`` without ``--once``,
  ``stcore serve``) has to be running after a few seconds, and then exit 0 on SIGTERM;
- ``pip install NAME...`` lines (the published packages) check that each distribution, with
  its extras, is installed here: the sandbox does not download (``-e PATH[extras]``: the
  project at PATH, from the page's folder);
- a block preceded by ``<!-- doc-test: covered-by tests/FILE.py::TEST ... -->`` is run by those
  tests instead (they must exist): ``scripts/test`` is CI itself, ``scripts/demo`` has its own test.

Everything else (unlabelled blocks, ``text``) is output or a diagram, not code.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sqlite3
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tomli_w

ROOT = Path(__file__).resolve().parent.parent
PAGES = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    *sorted((ROOT / "plugins").glob("*/README.md")),
]
RUN = {"python", "bash", "sh", "toml", "json"}
#: tables that make a toml block a piece of stcore.toml
STCORE_TABLES = {"repository", "sources", "remotes", "backup", "daemon", "retention", "cache"}
#: seconds a long-running command must stay up before it is stopped
SERVICE_SECONDS = 8.0  # long enough to start on a loaded machine, whose SIGTERM then ends it
_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
_MARK = re.compile(r"<!--\s*doc-test:\s*covered-by\s+(.+?)\s*-->\s*$")


@dataclass
class Block:
    page: Path
    line: int
    language: str
    code: str
    covered_by: str | None

    @property
    def where(self) -> str:
        return f"{_shown(self.page)}:{self.line}"


def _shown(page: Path) -> str:
    return str(page.relative_to(ROOT)) if page.is_relative_to(ROOT) else page.name


def blocks(page: Path) -> list[Block]:
    text = page.read_text()
    found = []
    for match in _FENCE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        mark = _MARK.search(before)
        found.append(
            Block(page, line, match.group(1), match.group(2), mark.group(1) if mark else None)
        )
    return found


def _ids() -> list[Any]:
    return [pytest.param(p, id=str(p.relative_to(ROOT))) for p in PAGES]


# --- the sandbox ---------------------------------------------------------------------------------


def _make_data(data: Path) -> None:
    (data / "models").mkdir(parents=True)
    (data / "logs").mkdir()
    (data / "tables").mkdir()
    (data / "state").mkdir()
    (data / "ai_hub.json").write_text(json.dumps({"signals": [1, 2, 3], "version": 1}))
    (data / "state" / "ai_hub.json").write_text(json.dumps({"state": "ok"}))
    (data / "models" / "weights.bin").write_bytes(os.urandom(4096))
    (data / "models" / "scratch.tmp").write_text("not kept")
    for name in ("events.jsonl", "a.jsonl", "b.jsonl"):
        (data / "logs" / name).write_text(
            "".join(json.dumps({"n": n, "event": name}) + "\n" for n in range(20))
        )
    with sqlite3.connect(data / "state.db") as db:
        db.execute("CREATE TABLE IF NOT EXISTS runs (id INTEGER PRIMARY KEY, note TEXT)")
        db.executemany("INSERT INTO runs (note) VALUES (?)", [(f"run {n}",) for n in range(50)])
    db.close()
    import pandas as pd

    frame = pd.DataFrame({"id": range(100), "score": [n / 4 for n in range(100)]})
    frame.to_parquet(data / "tables" / "data.parquet")


class Sandbox:
    def __init__(self, root: Path, s3: str | None) -> None:
        self.root = root
        self.app = root / "app-folder"
        self.home = root / "home"
        self.app.mkdir(parents=True)
        self.home.mkdir()
        _make_data(self.app / "data")
        _make_data(self.home / "app" / "data")
        (self.app / ".venv").symlink_to(ROOT / ".venv")
        self.config: dict[str, Any] = {}
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("STCORE_", "CLOUD_", "AWS_", "PYTEST_"))
        }
        self.env.update(
            HOME=str(self.home),
            XDG_DATA_HOME=str(self.home / ".local" / "share"),
            STCORE_CACHE_DIR=str(root / "cache"),
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            PYTHONPATH=str(ROOT),  # the seed facade, a module beside the package
            TMPDIR=str(root / "tmp"),
        )
        (root / "tmp").mkdir()
        if s3 is not None:
            self.env.update(
                AWS_ENDPOINT_URL=s3,
                AWS_ACCESS_KEY_ID="testing",
                AWS_SECRET_ACCESS_KEY="testing",
                AWS_DEFAULT_REGION="us-east-1",
            )
        self._python: subprocess.Popen[str] | None = None
        self.installed = root / "installed.py"  # what stands in for `pip install`
        self.installed.write_text(_INSTALLED)

    # python: one interpreter per page
    def python(self, block: Block) -> None:
        if self._python is None:
            self._python = subprocess.Popen(
                [sys.executable, "-c", _DRIVER],
                cwd=self.app,
                env=self.env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        assert self._python.stdin is not None and self._python.stdout is not None
        self._python.stdin.write(json.dumps({"where": block.where, "code": block.code}) + "\n")
        self._python.stdin.flush()
        answer = self._python.stdout.readline()
        assert answer, f"{block.where}: the interpreter died"
        result = json.loads(answer)
        assert result["ok"], f"{block.where} failed:\n{result['error']}"

    def close(self) -> None:
        if self._python is not None:
            assert self._python.stdin is not None
            self._python.stdin.close()
            self._python.wait(timeout=60)

    # bash: one shell per block, like a terminal session that lasts the page
    def shell(self, block: Block) -> None:
        state = self.root / "shell-state"
        lines = [
            "set -eo pipefail",
            f"[ -f {shlex.quote(str(state))} ] && . {shlex.quote(str(state))}",
        ]
        lines.append("trap 'echo \"@failed $LINENO\" >&2' ERR")
        offset = len(lines)
        for raw in block.code.splitlines():
            words = _words(raw)
            if words[:2] == ["pip", "install"]:
                check = f"{shlex.quote(sys.executable)} {shlex.quote(str(self.installed))}"
                wanted = [_requirement(w, block.page.parent) for w in words[2:] if w != "-e"]
                raw = f"{check} {shlex.join(wanted)}"
            elif _is_service(words):
                # runs until stopped: it must be up after a few seconds, then exit 0 on SIGTERM
                raw = f"timeout --preserve-status -s TERM {SERVICE_SECONDS} env {raw}"
            lines.append(raw)
        lines.append(
            f"{{ export -p; echo cd {shlex.quote(str(self.app))}; }} > {shlex.quote(str(state))}"
        )
        done = subprocess.run(
            ["bash", "-c", "\n".join(lines)],
            cwd=self.app, env=self.env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        if done.returncode != 0:
            failed = re.findall(r"^@failed (\d+)$", done.stderr, re.MULTILINE)
            lines_of_block = block.code.splitlines()
            index = int(failed[-1]) - offset - 1 if failed else -1
            at = block.line + 1 + index if 0 <= index < len(lines_of_block) else block.line
            code = lines_of_block[index] if 0 <= index < len(lines_of_block) else block.code
            raise AssertionError(
                f"{_shown(block.page)}:{at}: `{code.strip()}` exited {done.returncode}\n"
                f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )

    # toml
    def toml(self, block: Block) -> None:
        try:
            parsed = tomllib.loads(block.code)
        except tomllib.TOMLDecodeError as exc:
            raise AssertionError(f"{block.where}: not TOML: {exc}") from None
        if not set(parsed) & STCORE_TABLES:
            return
        _merge(self.config, parsed)
        (self.app / "stcore.toml").write_text(tomli_w.dumps(self.config))
        done = subprocess.run(
            [sys.executable, "-c", "from stcore.config import load_settings; load_settings()"],
            cwd=self.app, env=self.env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, f"{block.where}: stcore.toml does not load:\n{done.stderr}"


_DRIVER = r"""
import json, os, sys, traceback
answers = os.fdopen(os.dup(1), "w")  # what the snippets print goes to stderr instead
os.dup2(2, 1)
sys.stdout = sys.stderr
namespace = {"__name__": "__main__"}
for line in sys.stdin:
    request = json.loads(line)
    try:
        exec(compile(request["code"], request["where"], "exec"), namespace)
        answer = {"ok": True}
    except BaseException:
        answer = {"ok": False, "error": traceback.format_exc()}
    sys.stdout.flush()
    print(json.dumps(answer), file=answers, flush=True)
"""


def _merge(into: dict[str, Any], new: dict[str, Any]) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def _words(line: str) -> list[str]:
    try:
        return shlex.split(line, comments=True)
    except ValueError:  # part of a quoted string over several lines
        return []


_INSTALLED = """
import sys
from importlib import metadata
for requirement in sys.argv[1:]:
    if requirement.startswith("-"):
        continue
    name, _, extras = requirement.partition("[")
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        sys.exit(f"{name} is not a distribution installed here")
    provided = set(dist.metadata.get_all("Provides-Extra") or [])
    for extra in filter(None, (e.strip() for e in extras.rstrip("]").split(","))):
        if extra not in provided:
            sys.exit(f"{name} has no extra {extra!r}")
        for needed in dist.requires or []:
            if f'extra == "{extra}"' in needed:
                wanted = needed.split(";")[0].strip()
                project = wanted.split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip()
                try:
                    metadata.distribution(project)
                except metadata.PackageNotFoundError:
                    sys.exit(f"{name}[{extra}] needs {wanted}, which is not installed here")
"""


def _is_service(words: list[str]) -> bool:
    while words and "=" in words[0] and not words[0].startswith("-"):
        words = words[1:]  # VAR=value prefixes
    if words[:2] == ["stcore", "serve"]:
        return True
    return words[:2] == ["stcore", "daemon"] and "--once" not in words


def _requirement(word: str, folder: Path) -> str:
    """A ``pip install`` argument as ``name[extras]``: a path names the project there."""
    if not word.startswith((".", "/")):
        return word
    path, bracket, extras = word.partition("[")
    project = tomllib.loads((folder / path / "pyproject.toml").read_text())["project"]
    return f"{project['name']}{bracket}{extras}"


def _buckets(text: str, scheme: str = "s3") -> set[str]:
    return set(re.findall(rf"{scheme}://([a-z0-9][a-z0-9._-]{{1,61}}[a-z0-9])", text))


# --- the tests -----------------------------------------------------------------------------------


def test_pages_are_found_and_hold_snippets() -> None:
    assert ROOT / "README.md" in PAGES and len(PAGES) > 5
    assert sum(1 for page in PAGES for b in blocks(page) if b.language in RUN) > 20


@pytest.mark.parametrize("page", _ids())
def test_every_snippet_of_the_page_runs(page: Path, tmp_path: Path) -> None:
    runnable = [b for b in blocks(page) if b.language in RUN]
    if not runnable:
        pytest.skip(f"{page.name} has no code snippets")
    code = "\n".join(b.code for b in runnable if b.covered_by is None)
    with _s3_for(_buckets(code), tmp_path) as endpoint, _gcs_for(code, tmp_path) as gcs:
        sandbox = Sandbox(tmp_path / "sandbox", endpoint)
        if gcs is not None:
            sandbox.env.update(STORAGE_EMULATOR_HOST=gcs, GCP_PROJECT_ID="doc-project")
        try:
            for block in runnable:
                if block.covered_by is not None:
                    _check_covered(block)
                elif block.language == "python":
                    sandbox.python(block)
                elif block.language in ("bash", "sh"):
                    sandbox.shell(block)
                elif block.language == "toml":
                    sandbox.toml(block)
                else:
                    try:
                        json.loads(block.code)
                    except json.JSONDecodeError as exc:
                        raise AssertionError(f"{block.where}: not JSON: {exc}") from None
        finally:
            sandbox.close()


def _check_covered(block: Block) -> None:
    assert block.covered_by is not None
    for test in block.covered_by.split():
        file, _, name = test.partition("::")
        source = ROOT / file
        assert source.is_file(), f"{block.where}: covered by {file}, which does not exist"
        assert re.search(rf"^def {re.escape(name)}\(", source.read_text(), re.MULTILINE), (
            f"{block.where}: covered by {test}, which does not exist"
        )


def _s3_for(buckets: set[str], tmp_path: Path) -> Any:
    from contextlib import contextmanager, nullcontext

    if not buckets:
        return nullcontext(None)

    @contextmanager
    def running() -> Iterator[str]:
        import boto3

        from testsupport.s3_server import moto_s3_server

        with moto_s3_server() as endpoint:
            client = boto3.client(
                "s3", endpoint_url=endpoint, aws_access_key_id="testing",
                aws_secret_access_key="testing", region_name="us-east-1",
            )  # fmt: skip
            for bucket in sorted(buckets):
                client.create_bucket(Bucket=bucket)
            yield endpoint

    return running()


def _gcs_for(code: str, tmp_path: Path) -> Any:
    from contextlib import contextmanager, nullcontext

    if "gs://" not in code:
        return nullcontext(None)

    @contextmanager
    def running() -> Iterator[str]:
        from testsupport.gcs_server import start_fake_gcs_server

        server = start_fake_gcs_server(tmp_path)
        try:
            yield server.endpoint
        finally:
            server.stop()

    return running()


def test_the_runner_fails_a_broken_snippet(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("```python\n1/0\n```\n\n```bash\nfalse\n```\n")
    python, shell = blocks(page)
    sandbox = Sandbox(tmp_path / "sandbox", None)
    try:
        with pytest.raises(AssertionError, match=re.escape("page.md:1 failed")):
            sandbox.python(python)
        with pytest.raises(AssertionError, match=re.escape("page.md:6: `false` exited 1")):
            sandbox.shell(shell)
    finally:
        sandbox.close()


def test_long_running_commands_are_recognised() -> None:
    assert _is_service(["stcore", "serve", "--port", "8765"])
    assert _is_service(["X=1", "stcore", "daemon"])
    assert not _is_service(["stcore", "daemon", "--once"])
    assert not _is_service(["stcore", "status"])
