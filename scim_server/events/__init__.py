"""The event stream: every change Entra makes, as a signed RFC 9967 Security Event Token, for
the Joyn FSM application.

The write path records each change in the storage outbox, in the change's own transaction
(storage/writes.py, storage/outbox.py). This package delivers it: `sets` turns an outbox record
into a SET's claims, `keys` signs them and publishes the JWKS, `stream` hands out batches in
order and takes acknowledgements, `routes` serves RFC 8936 poll, the JWKS, the bootstrap
snapshot and `tail`, and `push` sends each SET to an RFC 8935 endpoint.

The defaults below are the one place they are defined: `serve --help` shows them without
importing the rest of the package, and the operator's CRD defaults are checked against them.
"""

DEFAULT_AUDIENCE = "joyn-fsm"  # the SETs' aud: the receiver
DEFAULT_RETENTION = "336h"  # two weeks: how long an unacknowledged event is kept
DEFAULT_RETENTION_COUNT = 1_000_000  # about 600 MB of outbox at Entra's typical user size
