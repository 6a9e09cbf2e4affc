"""Process memory read from /proc (Linux), shared by the memory benchmarks.

Why /proc rather than ``resource``: ``ru_maxrss`` is a high-water mark for the whole process life, while
VmHWM can be reset (``reset_peak``) so that one stage's peak is measured on its own.
"""
from __future__ import annotations


def status_kb(field: str) -> int | None:
    """A field of /proc/self/status in kB (VmRSS, VmHWM, ...); None off Linux."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0: write 5 to /proc/self/clear_refs); False where it cannot."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False
