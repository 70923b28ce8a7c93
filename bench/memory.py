"""Peak memory of the measuring process itself, for the benchmarks' "Peak RSS" columns.

``resource.getrusage(RUSAGE_SELF).ru_maxrss`` is wrong for this: Linux keeps it across fork + exec, so a child
process reports at least its parent's RSS at the fork (the sync bench's measuring child, started from a parent
holding the seeded data, read 203 MB where it peaked at 95 MB), and it never goes down, so a second measurement
in one process repeats the first one's peak. Linux's ``VmHWM`` is the high water mark of this process's own
address space, and writing "5" to ``/proc/self/clear_refs`` resets it to the current RSS, so a section can be
measured on its own.
"""

from __future__ import annotations

import resource
from pathlib import Path

_STATUS = Path("/proc/self/status")


def _status_kib(key: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def reset_peak() -> bool:
    """Start a new measurement: VmHWM := current RSS. False where the kernel does not allow it (then
    ``peak_mb`` reports the peak since the process started)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_mb() -> float:
    """Peak resident memory of this process, in MB, since it started or since ``reset_peak()``."""
    kib = _status_kib("VmHWM")
    if kib is None:  # not Linux: fall back (may include a fork parent's peak)
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024.0


def current_mb() -> float:
    kib = _status_kib("VmRSS")
    return (kib or 0) / 1024.0
