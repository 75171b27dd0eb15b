"""The shape of the code: a thin typed facade, an engine that reads no environment, one test
file per operation. (The import layers themselves are import-linter's contracts in
pyproject.toml, which scripts/test runs.)"""

from __future__ import annotations

import ast
import inspect
import typing
from pathlib import Path

import pytest

import stcore
from stcore import repository as facade
from stcore.errors import ConfigError
from stcore.repository import Repository

ROOT = Path(__file__).resolve().parent.parent
ENGINE = ROOT / "stcore" / "repo"
OPERATIONS = ["backup", "restore", "check", "prune", "diff", "keys", "locks", "forget", "init"]
PUBLIC = [
    name
    for name, member in inspect.getmembers(Repository)
    if not name.startswith("_") and (inspect.isfunction(member) or isinstance(member, property))
]


def _mentions_any(hint: object) -> bool:
    if hint is typing.Any:
        return True
    return any(_mentions_any(arg) for arg in typing.get_args(hint))


@pytest.mark.parametrize("name", PUBLIC)
def test_every_public_member_of_the_facade_has_a_concrete_return_type(name: str) -> None:
    member = inspect.getattr_static(Repository, name)
    function = member.fget if isinstance(member, property) else member
    hints = typing.get_type_hints(function, {**vars(facade), **_typing_only_names()})
    assert "return" in hints, f"Repository.{name} has no return annotation"
    assert not _mentions_any(hints["return"]), f"Repository.{name} returns Any"


def _typing_only_names() -> dict[str, object]:
    """The names the facade imports under ``if TYPE_CHECKING:`` (its return types of the
    operations it imports where used), imported here."""
    namespace: dict[str, object] = {}
    tree = ast.parse((ROOT / "stcore" / "repository.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            exec(compile(ast.Module(node.body, []), "repository.py", "exec"), namespace)
    namespace.pop("__builtins__", None)
    return namespace


#: what the facade may import inside a method (to spare a backup their start-up time): the
#: operations and services below it, never a layer above
LAZY_IMPORTS_BELOW = ("stcore.repo.", "stcore.access.", "stcore.sync")


def test_the_facade_imports_lazily_only_what_lies_below_it() -> None:
    tree = ast.parse((ROOT / "stcore" / "repository.py").read_text())
    nested = [
        (node.lineno, f"{node.module}.{alias.name}" if isinstance(node, ast.ImportFrom) else "")
        for function in ast.walk(tree)
        if isinstance(function, ast.FunctionDef)
        for node in ast.walk(function)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    ]
    assert nested, "no import in a method: drop this test's allowance"
    for line, name in nested:
        assert name.startswith(LAZY_IMPORTS_BELOW), f"repository.py:{line} imports {name}"
    assert _typing_only_names(), "the return types imported for type checkers are found"


@pytest.mark.parametrize("path", sorted(ENGINE.glob("*.py")), ids=lambda p: p.name)
def test_the_engine_reads_no_environment_or_working_directory(path: Path) -> None:
    source = path.read_text()
    for forbidden in ("os.environ", "getenv", "getcwd", "Path.cwd", "load_settings", "dotenv"):
        assert forbidden not in source, f"{path.name} uses {forbidden}"


@pytest.mark.parametrize("operation", OPERATIONS)
def test_each_operation_has_its_file_and_its_test_file(operation: str) -> None:
    module = ENGINE / f"{operation}.py"
    assert module.is_file()
    assert ast.get_docstring(ast.parse(module.read_text())), f"{module.name} needs a docstring"
    assert (ROOT / "tests" / f"test_{operation}.py").is_file()


@pytest.mark.parametrize(
    "path", sorted((ROOT / "stcore").rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT))
)
def test_every_module_says_its_one_job(path: Path) -> None:
    assert ast.get_docstring(ast.parse(path.read_text())), f"{path} has no module docstring"


def test_every_exception_lives_in_errors() -> None:
    for path in (ROOT / "stcore").rglob("*.py"):
        if path.name == "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases = {getattr(b, "id", getattr(b, "attr", "")) for b in node.bases}
                assert not any(b.endswith(("Error", "Exception")) for b in bases) or (
                    # a local control-flow signal inside one function is not part of the API
                    node.name == "Stop"
                ), f"{path.name}: class {node.name} belongs in stcore/errors.py"


def test_a_remote_named_without_settings_is_a_clear_error(repo: Repository) -> None:
    with pytest.raises(ConfigError, match="pass settings="):
        repo.sync("mirror")


def test_the_results_are_exported_from_the_package() -> None:
    for name in ("BackupResult", "RestoreResult", "PruneResult", "RepositoryStats", "KeyInfo"):
        assert hasattr(stcore, name)
