"""SQL identifiers in migration text: the one pattern for a (quoted) name and its unquoting.

The linter (function names), the runner (CREATE INDEX CONCURRENTLY targets) and
verify (trigger names, tables and functions) all find names in SQL text with
these; a quoted identifier may hold anything, ``""`` being a quote.
"""

from __future__ import annotations

import re

#: one identifier: ``"Any ""quoted"" text"`` or a plain name
IDENT = r'(?:"(?:[^"]|"")+"|[A-Za-z_][\w$]*)'
#: an identifier optionally qualified by a schema: ``schema.name``
QUALIFIED = rf"{IDENT}(?:\s*\.\s*{IDENT})?"

_PART = re.compile(IDENT)


def unquote(name: str) -> str:
    """The bare object name: schema dropped, a quoted name unquoted, a plain one lowercased."""
    parts = _PART.findall(name.strip())
    last = parts[-1] if parts else name.strip()
    if last.startswith('"'):
        return last[1:-1].replace('""', '"')
    return last.lower()
