"""The write rules' retry (storage/writes.py): a transaction the database rolled back for a
conflict (PostgreSQL's deadlock detector) runs again, and one that keeps meeting conflicts
ends in a retryable 503, never a 500."""

from contextlib import asynccontextmanager

import pytest

from scim_server.errors import ScimError
from scim_server.schemas import USER_TYPE
from scim_server.storage.writes import RETRIES, Retry, WritePath

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


class Conflicted(WritePath):
    """A backend whose first `conflicts` transactions are rolled back for a conflict."""

    def __init__(self, conflicts: int) -> None:
        self.conflicts, self.tries = conflicts, 0

    @asynccontextmanager
    async def transaction(self):
        self.tries += 1
        if self.tries <= self.conflicts:
            raise Retry()
        yield self

    async def insert(self, rt, res) -> None:
        pass


async def test_a_rolled_back_write_runs_again():
    store = Conflicted(conflicts=RETRIES - 1)
    made = await store.create(USER_TYPE, {"userName": "a"}, None)
    assert made.doc == {"userName": "a"} and store.tries == RETRIES


async def test_a_write_that_keeps_meeting_conflicts_is_a_retryable_503():
    store = Conflicted(conflicts=RETRIES)
    with pytest.raises(ScimError) as e:
        await store.create(USER_TYPE, {"userName": "a"}, None)
    assert e.value.status == 503 and e.value.headers["Retry-After"] == "1"
    assert store.tries == RETRIES
