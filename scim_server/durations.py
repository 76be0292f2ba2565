"""Durations as the CRD and the command line write them: `72h`, `24h30m`, `90s`. Defined here,
in the server's package, so the operator (which may import the server, never the reverse)
parses them the same way."""

from __future__ import annotations

import re
from datetime import timedelta

_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
PATTERN = _DURATION.pattern  # the CRD's pattern for such fields


def parse_duration(text: str) -> timedelta:
    """`72h`, `24h30m`, `90s` as a timedelta; ValueError for anything else."""
    m = _DURATION.match(text or "")
    if not m or not any(m.groups()):
        raise ValueError(f"not a duration: {text!r}")
    h, mi, s = (int(g or 0) for g in m.groups())
    return timedelta(hours=h, minutes=mi, seconds=s)
