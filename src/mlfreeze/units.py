"""Sizes in bytes: one grammar to read them, one way to write them, GitHub's asset limit.

Every size mlfreeze reads (``[tool.mlfreeze.budgets]``, ``$MLFREEZE_SPLIT_LIMIT``) goes
through :func:`parse_size`, and every size a report prints goes through :func:`format_size`.

Grammar: a non-negative number, optional spaces, an optional unit (case-insensitive).

* no unit or ``B``: bytes (``"1073741824"``, ``"512 B"``); a number without a unit must be whole;
* SI units are decimal: ``kB`` = 10^3, ``MB`` = 10^6, ``GB`` = 10^9, ``TB`` = 10^12;
* IEC units are binary: ``KiB`` = 2^10, ``MiB`` = 2^20, ``GiB`` = 2^30, ``TiB`` = 2^40.

So ``"1 GiB"`` == ``"1073741824"`` == 2^30 and ``"1 GB"`` == 10^9, and ``"60MB"`` == ``"60 MB"``.
A bare ``K``/``M``/``G`` is refused: it does not say which of the two it means.
Reports write binary units (KiB, MiB, GiB, TiB) with one decimal, as ``du -h`` does, so
GitHub's 2 GiB limit and a bundle's size are always stated in the same unit.
"""

from __future__ import annotations

import math
import re

GITHUB_ASSET_LIMIT = 2 * 2**30
"""GitHub refuses release assets of 2 GiB (2,147,483,648 bytes) or more."""

UNITS: dict[str, int] = {
    "": 1, "b": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")
_AMBIGUOUS = {"k", "m", "g", "t"}
_FORMAT_UNITS = ("KiB", "MiB", "GiB", "TiB")


def parse_size(text: str | int) -> int:
    """Bytes of a size written ``text`` (see the module docstring for the grammar).

    ``parse_size("4.2 GB") == 4_200_000_000``, ``parse_size("60 MiB") == 62_914_560``,
    ``parse_size(1500) == 1500``. Fractional results round to the nearest byte.
    Raises ValueError (a message naming the text and the accepted forms) when malformed,
    negative or a boolean.
    """
    if isinstance(text, bool):
        raise ValueError("a size, not a boolean")
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"{text} is negative; a size cannot be")
        return text
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a size")
    m = _SIZE.match(text)
    unit = m.group(2).lower() if m else ""
    if m and unit in _AMBIGUOUS:
        raise ValueError(f"{text!r}: '{m.group(2)}' is ambiguous; write {m.group(2).upper()}B "
                         f"(powers of 1000) or {m.group(2).upper()}iB (powers of 1024)")
    if not m or unit not in UNITS:
        raise ValueError(f"{text!r} is not a size like '4.2 GB' (10^9), '60 MiB' (2^20) or '1500000' (bytes)")
    number = m.group(1)
    if unit in ("", "b") and "." in number:
        raise ValueError(f"{text!r}: a byte count must be a whole number")
    return round(float(number) * UNITS[unit])


def format_size(n: float) -> str:
    """``n`` bytes in binary units with one decimal: ``"512 B"``, ``"60.0 MiB"``, ``"4.7 GiB"``.

    Negative values (deltas) keep their sign: ``format_size(-1536) == "-1.5 KiB"``.
    """
    if not math.isfinite(n):
        raise ValueError(f"{n!r} is not a byte count")
    sign = "-" if n < 0 else ""
    size = abs(n)
    if size < 1024:
        return f"{sign}{size:.0f} B"
    for unit in _FORMAT_UNITS:
        size /= 1024
        if round(size, 1) < 1024 or unit == _FORMAT_UNITS[-1]:
            return f"{sign}{size:.1f} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover


def format_exact(n: int) -> str:
    """``n`` bytes exactly and in binary units: ``"2,147,483,648 bytes (2.0 GiB)"``."""
    return f"{n:,} bytes ({format_size(n)})"
