"""Path globs over POSIX relative paths, shared by the prune rules and the size classifier.

``**/`` matches any number of folders (including none), ``**`` anything, ``*`` and ``?``
stay inside one path segment, and ``<name>`` captures one segment as a named group.
"""

from __future__ import annotations

import re
from functools import cache


def glob_to_regex(glob: str) -> str:
    out = []
    i = 0
    while i < len(glob):
        c = glob[i]
        if glob.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "<":
            end = glob.index(">", i)
            out.append(f"(?P<{glob[i + 1:end]}>[^/]+)")
            i = end + 1
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


@cache
def compile_glob(glob: str) -> re.Pattern[str]:
    """The whole-path regex of ``glob``."""
    return re.compile(glob_to_regex(glob) + r"\Z")
