"""What a process holds of a mapped file."""

from __future__ import annotations

from pathlib import Path


def mapped_kb(path: Path) -> int:
    """This process's resident kB of the mappings of `path` (smaps)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        fields = line.split()
        if "-" in fields[0] and not fields[0].endswith(":"):
            inside = fields[-1] == str(path)
        elif inside and fields[0] == "Rss:":
            total += int(fields[1])
    return total
