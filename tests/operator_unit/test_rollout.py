"""Which image a tenant's server runs when the operator's server image changes (rollout.py)."""

import pytest
from joyn_operator.rollout import Gate, ImageChoice, RolloutPolicy, choose_image, rolled

OLD, NEW, PINNED = "r/joyn-scim:1", "r/joyn-scim:2", "r/custom:7"


def never() -> bool:
    raise AssertionError("no place in the batch was needed")


@pytest.mark.parametrize("policy", ["Batches", "All", "OptIn"])
def test_a_tenants_own_image_wins_and_a_new_server_starts_on_the_default(policy):
    p = RolloutPolicy(policy)
    assert choose_image(PINNED, NEW, OLD, p, False, never) == ImageChoice(PINNED)
    assert choose_image(None, NEW, None, p, False, never) == ImageChoice(NEW)  # no server yet
    assert choose_image(None, NEW, NEW, p, False, never) == ImageChoice(NEW)  # already there
    # Asked for by the tenant's annotation: at once, whatever the policy.
    assert choose_image(None, NEW, OLD, p, True, never) == ImageChoice(NEW)


def test_all_rolls_every_server_and_opt_in_holds_those_that_did_not_ask():
    assert choose_image(None, NEW, OLD, RolloutPolicy("All"), False, never) == ImageChoice(NEW)
    assert choose_image(None, NEW, OLD, RolloutPolicy("OptIn"), False, never) == \
        ImageChoice(OLD, pending=NEW)


def test_batches_roll_a_server_only_with_a_place_in_the_batch():
    p = RolloutPolicy("Batches", 2)
    assert choose_image(None, NEW, OLD, p, False, lambda: True) == ImageChoice(NEW)
    assert choose_image(None, NEW, OLD, p, False, lambda: False) == ImageChoice(OLD, pending=NEW)


def test_the_gate_lets_at_most_a_batch_roll_and_wakes_the_longest_waiting_when_one_is_done():
    gate = Gate()
    tenants = [("ns", f"t{i}") for i in range(5)]
    assert [gate.admit(k, 2) for k in tenants] == [True, True, False, False, False]
    assert gate.admit(tenants[0], 2)  # asking again keeps its place
    assert gate.woken() == []
    gate.settled(tenants[1], 2)
    assert gate.woken() == [tenants[2]]  # only one place came free; the first in line gets it
    assert gate.woken() == []
    assert gate.admit(tenants[2], 2) and not gate.admit(tenants[3], 2)
    gate.forget(tenants[4], 2)  # deleted while waiting: never woken
    gate.settled(tenants[0], 2)
    gate.settled(tenants[2], 2)
    assert gate.woken() == [tenants[3]]
    gate.settled(("ns", "never-rolled"), 2)  # settling a tenant without a place changes nothing
    assert gate.rolling == set()


def test_a_server_that_never_becomes_available_keeps_its_place_so_a_bad_image_stops():
    """Nothing but settled() frees a place, and the reconcile calls it only once the server
    is available on the image: a broken image rolls one batch and then nothing."""
    gate = Gate()
    p = RolloutPolicy("Batches", 3)
    rolled = [choose_image(None, NEW, OLD, p, False, lambda i=i: gate.admit(("ns", f"t{i}"), 3))
              for i in range(200)]
    assert sum(c.image == NEW for c in rolled) == 3
    assert all(c.pending == NEW for c in rolled if c.image == OLD)


def pod(image: str, ready: bool) -> dict:
    return {"spec": {"containers": [{"image": image}]},
            "status": {"conditions": [{"type": "Ready", "status": str(ready)}]}}


def test_a_server_has_rolled_once_a_pod_on_the_image_is_ready_and_no_old_one_is_left():
    assert rolled([pod(NEW, True)], NEW)
    assert not rolled([pod(NEW, False)], NEW)  # starting
    assert not rolled([pod(OLD, True)], NEW)  # the old one still serving
    assert not rolled([pod(OLD, False), pod(NEW, True)], NEW)  # the old one still terminating
    assert not rolled([], NEW)
