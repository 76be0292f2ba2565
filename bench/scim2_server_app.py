"""scim2-server 0.8.3 as the comparison: its ASGIApplication with its in-memory storage.

Served by `python -m uvicorn bench.scim2_server_app:app` with the same options as our server, so
the benchmark compares the SCIM layers, not the HTTP servers.
"""

from scim2_server.applications.asgi import ASGIApplication
from scim2_server.memory import AsyncInMemoryStorage
from scim2_server.utils import load_default_provider

app = ASGIApplication(AsyncInMemoryStorage(), load_default_provider())
