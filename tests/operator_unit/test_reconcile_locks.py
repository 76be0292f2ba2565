"""Per-tenant locks (joyn_operator.reconcile.KeyedLocks): one tenant's reconciles never
overlap, and a lock is forgotten once nobody holds or waits for it."""

import asyncio

from joyn_operator.reconcile import KeyedLocks


def test_one_tenant_at_a_time_and_nothing_kept_afterwards():
    locks = KeyedLocks()
    inside: list[tuple] = []
    overlaps: list[tuple] = []

    async def work(key, tag):
        async with locks.hold(key):
            if any(k == key for k, _ in inside):
                overlaps.append((key, tag))
            inside.append((key, tag))
            await asyncio.sleep(0.01)
            inside.remove((key, tag))

    async def main():
        await asyncio.gather(*(work(("ns", f"t{i % 3}"), i) for i in range(12)))
        return len(locks)

    assert asyncio.run(main()) == 0
    assert overlaps == []


def test_a_failing_reconcile_releases_and_forgets_its_lock():
    locks = KeyedLocks()

    async def main():
        try:
            async with locks.hold(("ns", "t")):
                raise RuntimeError("boom")
        except RuntimeError:
            pass
        async with locks.hold(("ns", "t")):  # not stuck
            pass
        return len(locks)

    assert asyncio.run(main()) == 0
