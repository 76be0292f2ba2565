"""How running servers move to a new server image (the operator's server_image).

Every server pod is recreated when its image changes (Recreate: SQLite on a ReadWriteOnce
volume), so a new default image is an outage of every tenant that follows it. The policy says
how many at once:

- Batches (the default): at most batch_size servers roll at once; the next start when those
  are available again. A broken image stops after one batch instead of taking all 200 tenants
  down (the operator itself reconciles 16 at a time, which is no limit on a rollout: each
  reconcile takes milliseconds, the pod's restart happens after it).
- All: every server rolls as soon as its tenant is reconciled (16 at a time).
- OptIn: a server rolls only when its tenant asks (the annotation
  scim.sevenlakes.com/update-server-image: "true"), for teams that schedule each customer's
  restart. Under every policy that annotation rolls the tenant at once.

A tenant's own spec.server.image always wins and rolls at once: somebody chose it for this
tenant. A new tenant starts on the default image (it has no server to restart).

The choice is a pure function (choose_image); the one piece of state, which tenants are
rolling now, is the Gate in the operator's memory. An operator restart forgets it: servers
that were rolling then (on the new image, not yet available) are not counted again, so after a
restart up to one more batch may roll while they finish.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

POLICIES = ("Batches", "All", "OptIn")

Key = tuple[str, str]  # (namespace, name)


@dataclass(frozen=True)
class RolloutPolicy:
    policy: str = "Batches"
    # 10 of 200 tenants: a rollout of a good image takes ~20 rounds of a pod's restart (a few
    # minutes), a bad one reaches 10 customers before it stops.
    batch_size: int = 10


@dataclass(frozen=True)
class ImageChoice:
    image: str  # what the server runs from this reconcile on
    pending: str | None = None  # the default image it is held back from, if any


def choose_image(spec_image: str | None, default_image: str, running_image: str | None,
                 policy: RolloutPolicy, requested: bool, admit: Callable[[], bool]
                 ) -> ImageChoice:
    """The image of a tenant's server: `spec_image` (spec.server.image), else the operator's
    `default_image` if it runs no server yet, already runs it, the `policy` lets it move, or
    the tenant `requested` it; else the `running_image`, with `default_image` pending.
    `admit()` asks for one of the batch's places, and is called only when one is needed."""
    if spec_image:
        return ImageChoice(spec_image)
    if running_image is None or running_image == default_image:
        return ImageChoice(default_image)
    if policy.policy == "All" or requested:
        return ImageChoice(default_image)
    if policy.policy == "Batches" and admit():
        return ImageChoice(default_image)
    return ImageChoice(running_image, pending=default_image)


def rolled(pods: list[dict], image: str) -> bool:
    """Whether the server runs `image` and is available again: its pods all run it, and one is
    Ready. (Pods, not the Deployment's status: during a Recreate that status may still count
    the old pod as available after it already describes the new template.)"""
    def runs(pod: dict) -> bool:
        return [c.get("image") for c in (pod.get("spec") or {}).get("containers") or []] == [image]

    def ready(pod: dict) -> bool:
        return any(c.get("type") == "Ready" and c.get("status") == "True"
                   for c in (pod.get("status") or {}).get("conditions") or [])
    return bool(pods) and all(map(runs, pods)) and any(map(ready, pods))


class Gate:
    """The tenants rolling to the default image under Batches: at most batch_size at once. A
    tenant keeps its place until its Deployment runs the image and is available again (a
    server that never becomes available keeps it, so a broken image stops the rollout)."""

    def __init__(self) -> None:
        self.rolling: set[Key] = set()
        self._waiting: dict[Key, None] = {}  # in the order they asked, for fairness
        self._wake: list[Key] = []

    def admit(self, key: Key, size: int) -> bool:
        if key in self.rolling:
            return True
        if len(self.rolling) < size:
            self.rolling.add(key)
            self._waiting.pop(key, None)
            return True
        self._waiting.setdefault(key)
        return False

    def settled(self, key: Key, size: int) -> None:
        """`key` has rolled (its server is available on the image), or follows the default
        image no more: its place goes to the tenants that waited longest."""
        if key not in self.rolling:
            return
        self.rolling.discard(key)
        while self._waiting and len(self.rolling) + len(self._wake) < size:
            waiting = next(iter(self._waiting))
            del self._waiting[waiting]
            self._wake.append(waiting)

    def forget(self, key: Key, size: int) -> None:
        """`key` is gone: it neither rolls nor waits."""
        self._waiting.pop(key, None)
        self.settled(key, size)

    def woken(self) -> list[Key]:
        """The tenants to reconcile now, since a place became free for them (each once)."""
        out, self._wake = self._wake, []
        return out
