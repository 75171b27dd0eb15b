"""Path globs used by include/exclude options, restore filters and snapshot views.

One rule everywhere: a pattern without ``/`` matches an entry's name at any depth (``*.json``);
a pattern with ``/`` matches the whole relative path, where ``*`` and ``?`` stay within one path
component and ``**`` spans any number of them (``logs/**/*.jsonl``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable


@functools.lru_cache(maxsize=512)
def _compile(pattern: str, ignore_case: bool = False) -> re.Pattern[str]:
    parts: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**/", i):
            parts.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            parts.append(".*")
            i += 2
            continue
        if char == "*":
            parts.append("[^/]*")
        elif char == "?":
            parts.append("[^/]")
        elif char == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                parts.append(re.escape(char))
            else:
                body = pattern[i + 1 : end].replace("\\", "\\\\").replace("[", "\\[")
                if body.startswith("!"):
                    body = "^" + body[1:]
                parts.append(f"[{body}]")
                i = end
        else:
            parts.append(re.escape(char))
        i += 1
    flags = re.DOTALL | (re.IGNORECASE if ignore_case else 0)
    return re.compile("".join(parts) + r"\Z", flags)


def match_path(pattern: str, relative_path: str, *, ignore_case: bool = False) -> bool:
    """Whether ``relative_path`` (``/``-separated, no leading ``/``) matches ``pattern``;
    ``ignore_case`` compares letters regardless of case (``--iexclude``)."""
    pattern = pattern.strip("/")
    if "/" not in pattern:
        relative_path = relative_path.rsplit("/", 1)[-1]
    return _compile(pattern, ignore_case).match(relative_path) is not None


def portable(pattern: str, *, ignore_case: bool = False) -> tuple[str, int, bool]:
    """``pattern`` as plain values another process can match with ``re`` alone: the regular
    expression's source and flags, and whether it is matched against the whole relative path
    (else against its last component), as :func:`match_path` matches it."""
    pattern = pattern.strip("/")
    compiled = _compile(pattern, ignore_case)
    return compiled.pattern, compiled.flags, "/" in pattern


def match_any(patterns: Iterable[str], relative_path: str, *, ignore_case: bool = False) -> bool:
    return any(match_path(p, relative_path, ignore_case=ignore_case) for p in patterns)


def read_patterns(data: bytes) -> list[str]:
    """The patterns of an exclude file (``--exclude-file``), as restic reads one: one pattern a
    line, surrounding white space trimmed, blank lines and lines starting with ``#`` ignored.
    Bytes that are not UTF-8 become surrogate escapes, as the names of the walk do, so a
    pattern can name any file name the file system allows."""
    patterns = []
    for line in data.splitlines():
        pattern = line.decode("utf-8", "surrogateescape").strip()
        if pattern and not pattern.startswith("#"):
            patterns.append(pattern)
    return patterns
