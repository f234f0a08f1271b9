"""Small text formatters for status lines: counted nouns and file sizes."""
from __future__ import annotations

UNITS = ("KB", "MB", "GB", "TB")


def plural(n: int | float, noun: str, plural_form: str | None = None) -> str:
    """``"1 patch"``, ``"2 patches"``: the count with the noun in the right number."""
    many = plural_form or (noun + "es" if noun.endswith(("s", "sh", "ch", "x", "z")) else noun + "s")
    return f"{n:,} {noun if n == 1 else many}"


def file_size(n_bytes: int) -> str:
    """Bytes below 1 KB, else KB / MB / GB / TB with three significant figures (1024-based)."""
    n_bytes = int(n_bytes)
    if n_bytes < 1024:
        return plural(n_bytes, "byte")
    size, i = n_bytes / 1024.0, 0
    while size >= 1024.0 and i < len(UNITS) - 1:
        size, i = size / 1024.0, i + 1
    return f"{size:.3g} {UNITS[i]}" if size < 1000 else f"{size:.0f} {UNITS[i]}"
