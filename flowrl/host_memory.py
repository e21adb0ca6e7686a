"""The host's available memory, read in one place (evaluation's environment pool and the
dataset work's memory check both bound themselves by it)."""

import os


def available_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (Linux), else the free physical pages; None where neither
    can be read."""
    try:
        with open('/proc/meminfo') as meminfo:
            for line in meminfo:
                if line.startswith('MemAvailable:'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf('SC_AVPHYS_PAGES') * os.sysconf('SC_PAGE_SIZE')
    except (ValueError, OSError, AttributeError):
        return None
