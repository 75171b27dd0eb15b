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
def _compile(pattern: str) -> re.Pattern[str]:
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
                body = pattern[i + 1 : end].replace("\\", "\\\\")
                if body.startswith("!"):
                    body = "^" + body[1:]
                parts.append(f"[{body}]")
                i = end
        else:
            parts.append(re.escape(char))
        i += 1
    return re.compile("".join(parts) + r"\Z", re.DOTALL)


def match_path(pattern: str, relative_path: str) -> bool:
    """Whether ``relative_path`` (``/``-separated, no leading ``/``) matches ``pattern``."""
    pattern = pattern.strip("/")
    if "/" not in pattern:
        relative_path = relative_path.rsplit("/", 1)[-1]
    return _compile(pattern).match(relative_path) is not None


def match_any(patterns: Iterable[str], relative_path: str) -> bool:
    return any(match_path(p, relative_path) for p in patterns)
