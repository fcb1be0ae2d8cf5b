"""Memory of the process: its resident set size now, and its peak.

- memory: resident set size of the process at the end of the round, and its peak.
"""

from __future__ import annotations

import resource


def rss_mb() -> tuple[float, float]:
    """(current, peak) resident set size of this process in MB (Linux: /proc and ru_maxrss in KiB)."""
    current = 0.0
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                current = int(line.split()[1]) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return round(current, 1), round(peak, 1)
