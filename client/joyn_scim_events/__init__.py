"""Follow a joyn-scim tenant's event stream: every user and group change Entra provisions, as
signed RFC 9967 Security Event Tokens, into the application's own store.

    from joyn_scim_events import EventServer, PollReceiver

    server = EventServer("http://acme-scim.customers.svc:8080", token=receiver_token)
    PollReceiver(server, issuer=tenant_url, store=my_store).run()

`my_store` implements `Store` (position, apply, reset); see examples/events_mirror.py in the
joyn-scim repository for one that keeps a mirror in SQLite. For push (RFC 8935), mount
`PushReceiver(...).wsgi` at the URL the tenant pushes to.
"""

from .model import Event, Position, Resync, SetError, Snapshot, Store
from .receiver import DEFAULT_AUDIENCE, PollReceiver, PushReceiver
from .server import EventServer, ServerError
from .verify import Verifier

__all__ = ["DEFAULT_AUDIENCE", "Event", "EventServer", "PollReceiver", "Position",
           "PushReceiver", "Resync", "ServerError", "SetError", "Snapshot", "Store", "Verifier"]
