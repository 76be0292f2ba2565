"""A server with its event stream on (`--events-token-file`), and what the tests do with it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest
from conftest import ServerProcess, scim_client, write_token


class EventsServer(ServerProcess):
    """A `joyn-scim serve` with the stream on: `.token` is Entra's, `.receiver_token` the
    receiver's; `.scim` and `.events` are clients holding each."""

    token: str
    receiver_token: str

    def start(self) -> EventsServer:
        super().start()  # on a new port each time: the clients follow it
        self.scim = scim_client(self, self.token)
        self.events = httpx.Client(base_url=self.root, timeout=60,
                                   headers={"Authorization": f"Bearer {self.receiver_token}"})
        return self

    @property
    def issuer(self) -> str:
        """The Tenant URL the SETs name: --public-url, else the address it listens on."""
        args = self.extra_args
        return args[args.index("--public-url") + 1] if "--public-url" in args else self.url

    def poll(self, **body) -> httpx.Response:
        return self.events.post("/events", json=body)

    def drain(self) -> dict[str, str]:
        """Every SET now waiting, acknowledged: {jti: SET}."""
        got: dict[str, str] = {}
        acks: list[str] = []
        while True:
            r = self.poll(ack=acks, returnImmediately=True)
            assert r.status_code == 200, r.text
            sets = r.json()["sets"]
            if not sets:
                return got
            got.update(sets)
            acks = list(sets)


def start(workdir: Path, extra_args: list[str] | None = None) -> EventsServer:
    workdir.mkdir(parents=True, exist_ok=True)
    token = write_token(workdir / "token")
    receiver = write_token(workdir / "receiver-token")
    srv = EventsServer(workdir, [workdir / "token"],
                       ["--events-token-file", str(workdir / "receiver-token"),
                        *(extra_args or [])])
    srv.token, srv.receiver_token = token, receiver
    return srv.start()


@pytest.fixture
def events_server(tmp_path) -> Iterator[EventsServer]:
    srv = start(tmp_path / "srv")
    yield srv
    srv.stop()


def decode(token: str, srv: EventsServer, audience: str = "joyn-fsm") -> dict:
    """A SET's claims, verified by PyJWT (not the library that signed it) against the served
    JWKS, with its explicit type."""
    jwks = jwt.PyJWKSet.from_dict(httpx.get(srv.root + "/events/jwks.json").json())
    header = jwt.get_unverified_header(token)
    assert header["typ"] == "secevent+jwt" and header["alg"] == "ES256"
    key = next(k for k in jwks.keys if k.key_id == header["kid"])
    return jwt.decode(token, key, algorithms=["ES256"], audience=audience, issuer=srv.issuer,
                      options={"require": ["iss", "iat", "jti", "aud"]})


def example_mirror():
    """examples/events_mirror.py, the receiver the README shows, as a module."""
    import importlib.util
    path = Path(__file__).parents[2] / "examples" / "events_mirror.py"
    spec = importlib.util.spec_from_file_location("events_mirror", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
