"""Bounds on what one client can ask of the server, each named in the error that enforces it.

Entra sends one comparison per filter, bodies of a few KB, and each request at once; the bounds
are far above that and far below what would let one request stall the others.
"""

from __future__ import annotations

# Filters. MAX_DEPTH counts parentheses, `not` and `[...]` inside each other; it also keeps
# the SQL inside SQLite's parser stack, which overflows at about 12 such levels.
MAX_FILTER_LENGTH = 8192
MAX_DEPTH = 10
MAX_TERMS = 100

# Request bodies: a SCIM resource nests 4 deep (body, extension, complex, value); deeper only
# costs recursion in every layer that walks it.
MAX_JSON_DEPTH = 32

# SQLite's largest integer: a startIndex beyond it is an empty page like any other past the end.
MAX_INDEX = 2**63 - 1

# Seconds. One whole request (headers and body) from its first byte, or from connecting.
REQUEST_TIMEOUT = 15.0
# One query's run time in the database (a filter no index serves, over many resources).
QUERY_TIMEOUT = 2.0

# Events. The most SETs one poll returns (RFC 8936 maxEvents; more is refused with 400).
MAX_POLL_EVENTS = 1000
