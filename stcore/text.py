"""Text as it is safe to show a person: never a terminal control sequence, always encodable.

One function, :func:`printable`, used by everything that shows users' text (names, tags, other
programs' errors): the CLI's consoles and the status dashboard.
"""

from __future__ import annotations

import re

#: what `printable` escapes: C0 controls, DEL and C1 controls (a terminal obeys them), the
#: bidirectional formatting characters and line/paragraph separators (they reorder or break what
#: is shown), and lone surrogates (surrogateescape's stand-ins for bytes that are not UTF-8; they
#: cannot be encoded). A backslash is left as it is: error messages quote names with repr(), which
#: already escapes them, and doubling would show those escapes doubled ('x\\x1b'); --json is exact.
_UNSAFE = re.compile(
    r"[\x00-\x1f\x7f-\x9f"  # C0, DEL, C1
    r"\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069"  # bidi formatting, U+2028, U+2029
    r"\ud800-\udfff]"  # lone surrogates
)
_NAMED_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape_one(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED_ESCAPES.get(char)
    if named is not None:
        return named
    code = ord(char)
    if code < 0x80 or 0xDC80 <= code <= 0xDCFF:  # an ASCII control, or the byte it stands for
        return f"\\x{code & 0xFF:02x}"
    return f"\\u{code:04x}"


def printable(text: str) -> str:
    r"""``text`` as it is safe to show on a terminal: never a control sequence, always encodable.

    ``\n``, ``\t``, ``\r`` and ``\xNN`` below 0x80 are those control characters; ``\xNN`` from
    0x80 is a byte of a name that is not UTF-8 (its surrogateescape character U+DC80+NN:
    ``os.fsencode`` gives the byte back); ``\uNNNN`` is a C1 control, a bidirectional formatting
    character, a line or paragraph separator, or another lone surrogate. Everything else, a
    backslash and non-ASCII letters included, is shown as it is, so the output is safe but not
    always exact: ``--json`` is. docs/cli.md, "Names and text in the output", says the same.
    """
    return _UNSAFE.sub(_escape_one, text)
