"""Interest management: which objects each client sees, sans I/O (issue 11).

A server decides visibility with a *policy* (a tree of small objects) and *overrides* per
(object, client). For a pair the answer is, in this order of precedence:

1. ``hide_from(uid, client)`` was called: hidden, whatever else says;
2. ``show_to(uid, client)`` was called: visible, whatever the policy says;
3. otherwise the policy decides.

Policies compose: ``a & b`` (all of), ``a | b`` (any of), ``~a`` (not), ``ByType`` (one policy
per replicated class). Leaves: ``Everyone``, ``Nobody`` (with ``show_to``: explicit observer
sets), ``Hook`` (the object's own ``visible_to(client_id) -> bool``), ``OwnerOnly``
(``belonging_membership``), ``Team`` (an attribute of the object against the client's groups)
and ``Grid`` (a spatial hash around each client's focus object, with hysteresis).

``Interest.update(moved)`` is incremental: it re-decides only the pairs that may have changed,

- pairs whose range changed in a grid, for the objects that ``moved`` this tick;
- every client for an object added or ``refresh``-ed (its team, owner or hook answer changed);
- every object for a client added or ``refresh_client``-ed (its groups or focus changed);
- single pairs whose override changed.

When the policy *requires* a grid (the grid itself, or an all-of containing it) the last two
cases look only at what is in range, so even a join costs what the client can see. Policies
other than the grid are pure functions of the object and the client: when what they read
changes, call ``refresh(uid)`` (the engine does so for ``belonging_membership`` and for the
attributes a policy names in ``reads``).

The result is, per client, a ``Delta`` of entered uids (spawn with full current state), left
uids (despawn, reason ``left_view``) and destroyed uids (despawn, reason ``destroyed``).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from reverb.replication.grid import SpatialGrid

__all__ = [
    "AllOf",
    "AnyOf",
    "ByType",
    "Delta",
    "DespawnReason",
    "Everyone",
    "Grid",
    "Hook",
    "Interest",
    "Nobody",
    "Not",
    "OwnerOnly",
    "Policy",
    "Team",
    "rpc_target",
]


class DespawnReason(str, enum.Enum):
    """Why a client loses an object (the optional ``sync.left`` list, see docs/design)."""

    LEFT_VIEW = "left_view"  # still exists on the server; the client may not see it now
    DESTROYED = "destroyed"  # removed from the server's world


@dataclass(frozen=True)
class Delta:
    """What one client's view gains and loses in one update."""

    entered: frozenset[int] = frozenset()
    left: frozenset[int] = frozenset()  # still in the world: reason LEFT_VIEW
    destroyed: frozenset[int] = frozenset()  # removed from the world: reason DESTROYED

    def despawns(self) -> Iterator[tuple[int, DespawnReason]]:
        for uid in sorted(self.left):
            yield uid, DespawnReason.LEFT_VIEW
        for uid in sorted(self.destroyed):
            yield uid, DespawnReason.DESTROYED

    def __bool__(self) -> bool:
        return bool(self.entered or self.left or self.destroyed)


# -- policies --------------------------------------------------------------------------------


class Policy:
    """Decides whether ``client`` sees ``obj`` (uid ``uid``); see the module docstring."""

    # Attributes of the object the decision reads: the engine refreshes the object when one
    # of them changes. Leaves fill it in; composites gather their children's.
    reads: frozenset[str] = frozenset()

    def test(self, obj: Any, uid: int, client: int, interest: Interest) -> bool:
        raise NotImplementedError

    def children(self) -> tuple[Policy, ...]:
        return ()

    def __and__(self, other: Policy) -> Policy:
        return AllOf(self, other)

    def __or__(self, other: Policy) -> Policy:
        return AnyOf(self, other)

    def __invert__(self) -> Policy:
        return Not(self)

    def walk(self) -> Iterator[Policy]:
        yield self
        for child in self.children():
            yield from child.walk()


class Everyone(Policy):
    """Visible to every client (the engine's behaviour without interest management)."""

    def test(self, obj: Any, uid: int, client: int, interest: Interest) -> bool:
        return True


class Nobody(Policy):
    """Visible to no client: with ``show_to``, an explicit observer set."""

    def test(self, obj: Any, uid: int, client: int, interest: Interest) -> bool:
        return False


class Hook(Policy):
    """The object's own ``visible_to(client_id) -> bool``; objects without one: ``default``.

    The engine cannot see what the hook reads: call ``refresh(uid)`` when its answer may
    have changed."""

    def __init__(self, *, method: str = "visible_to", default: bool = True) -> None:
        self.method = method
        self.default = default

    def test(self, obj: Any, uid: int, client: int, interest: Interest) -> bool:
        hook = getattr(obj, self.method, None)
        if hook is None:
            return self.default
        return bool(hook(client))


class OwnerOnly(Policy):
    """Visible only to the client whose membership owns it (``belonging_membership``)."""

    reads = frozenset({"belonging_membership"})

    def test(self, obj: Any, uid: int, client: int, interest: Interest) -> bool:
        owner = getattr(obj, "belonging_membership", None)
        return owner is not None and owner == client


class Team(Policy):
    """Visible when the object's ``attr`` is one of the client's groups (``set_groups``).

    The attribute may hold one group or a list/tuple/set of them (seen by every member of
    any). An object whose attribute is ``None`` or missing is visible to all when
    ``unassigned`` is True (scenery, neutral objects), else to none."""

    def __init__(self, attr: str = "team", *, unassigned: bool = True) -> None:
        self.attr = attr
        self.unassigned = unassigned
        self.reads = frozenset({attr})

    def test(self, obj: Any, uid: int, client: int, interest: Interest) -> bool:
        value = getattr(obj, self.attr, None)
        if value is None:
            return self.unassigned
        groups = interest.groups(client)
        if isinstance(value, (list, tuple, set, frozenset)):
            return any(g in groups for g in value)
        return value in groups


class Grid(Policy):
    """In range of the client's focus object (``Interest.set_focus``), with hysteresis:
    enter at ``radius``, leave beyond ``radius + margin``. See ``reverb.replication.grid``."""

    def __init__(
        self,
        radius: float,
        *,
        margin: float | None = None,
        cell: float | None = None,
        fields: tuple[str, str] = ("x", "y"),
        stagger: int = 1,
    ) -> None:
        self.grid = SpatialGrid(radius, margin=margin, cell=cell, fields=fields, stagger=stagger)
        self.reads = frozenset(fields)

    def test(self, obj: Any, uid: int, client: int, interest: Interest) -> bool:
        held = self.grid.in_range.get(client)
        return held is not None and uid in held


class _Composite(Policy):
    def __init__(self, *parts: Policy) -> None:
        if not parts:
            raise ValueError(f"{type(self).__name__} needs at least one policy")
        self.parts = parts
        self.reads = frozenset().union(*(p.reads for p in parts))

    def children(self) -> tuple[Policy, ...]:
        return self.parts


class AllOf(_Composite):
    """Visible when every part says so (e.g. ``Grid(50) & Team()``)."""

    def test(self, obj: Any, uid: int, client: int, interest: Interest) -> bool:
        return all(p.test(obj, uid, client, interest) for p in self.parts)


class AnyOf(_Composite):
    """Visible when some part says so (e.g. ``Grid(50) | OwnerOnly()``)."""

    def test(self, obj: Any, uid: int, client: int, interest: Interest) -> bool:
        return any(p.test(obj, uid, client, interest) for p in self.parts)


class Not(_Composite):
    def __init__(self, part: Policy) -> None:
        super().__init__(part)

    def test(self, obj: Any, uid: int, client: int, interest: Interest) -> bool:
        return not self.parts[0].test(obj, uid, client, interest)


class ByType(Policy):
    """One policy per replicated class (looked up along the MRO), else ``default``."""

    def __init__(self, policies: Mapping[type, Policy], default: Policy | None = None) -> None:
        self.policies = dict(policies)
        self.default = default if default is not None else Everyone()
        self.reads = frozenset().union(self.default.reads, *(p.reads for p in policies.values()))
        self._cache: dict[type, Policy] = {}

    def children(self) -> tuple[Policy, ...]:
        return (*self.policies.values(), self.default)

    def of(self, cls: type) -> Policy:
        policy = self._cache.get(cls)
        if policy is None:
            policy = next((self.policies[c] for c in cls.__mro__ if c in self.policies), None)
            policy = self._cache[cls] = policy if policy is not None else self.default
        return policy

    def test(self, obj: Any, uid: int, client: int, interest: Interest) -> bool:
        return self.of(type(obj)).test(obj, uid, client, interest)


def _required_grid(policy: Policy) -> Grid | None:
    """A grid the policy implies (nothing outside its range can be visible), if any."""
    if isinstance(policy, Grid):
        return policy
    if isinstance(policy, AllOf):
        for part in policy.parts:
            found = _required_grid(part)
            if found is not None:
                return found
    return None


# -- the per-world state ---------------------------------------------------------------------


class Interest:
    """Per-client visible sets for one world; see the module docstring."""

    def __init__(self, policy: Policy | None = None) -> None:
        self.policy = policy if policy is not None else Everyone()
        self._grids = [p.grid for p in self.policy.walk() if isinstance(p, Grid)]
        required = _required_grid(self.policy)
        self._scope = required.grid if required is not None else None
        self.objects: dict[int, Any] = {}
        self._visible: dict[int, set[int]] = {}  # client -> uids
        self._holders: dict[int, set[int]] = {}  # uid -> clients seeing it
        self._groups: dict[int, frozenset[Any]] = {}
        self._shown: dict[int, set[int]] = {}  # uid -> clients (show_to)
        self._hidden: dict[int, set[int]] = {}  # uid -> clients (hide_from)
        self._overridden: dict[int, set[int]] = {}  # client -> uids with an override
        self._stale_objects: set[int] = set()
        self._stale_clients: set[int] = set()
        self._stale_pairs: dict[int, set[int]] = {}
        self._grid_clients: set[int] = set()  # clients whose grid range is to recompute
        self._destroyed: dict[int, set[int]] = {}  # client -> uids removed while visible
        self._placed: set[int] = set()  # added since the last update

    # -- objects -----------------------------------------------------------------------------

    def add_object(self, uid: int, obj: Any) -> None:
        """A new object; ``uid`` is never one used before (§7.1: UIDs are never reused)."""
        if uid in self.objects:
            raise ValueError(f"object {uid} is already known")
        self.objects[uid] = obj
        self._placed.add(uid)  # placed in the grids at the next update
        self._stale_objects.add(uid)

    def remove_object(self, uid: int) -> None:
        """The object is destroyed: clients that saw it get a despawn ``destroyed``."""
        if self.objects.pop(uid, None) is None:
            return
        for grid in self._grids:
            grid.unplace(uid)
            # Clients focused on it now have nothing in that grid's range (until set_focus).
            self._grid_clients |= grid.focused_by(uid)
        for client in self._holders.pop(uid, set()):
            self._visible[client].discard(uid)
            self._destroyed.setdefault(client, set()).add(uid)
        for client in self._shown.pop(uid, set()) | self._hidden.pop(uid, set()):
            self._discard(self._overridden, client, uid)
        self._stale_objects.discard(uid)
        self._placed.discard(uid)
        for pairs in self._stale_pairs.values():
            pairs.discard(uid)

    def refresh(self, uid: int) -> None:
        """Re-decide ``uid`` for every client at the next update (what a policy reads changed)."""
        if uid in self.objects:
            self._stale_objects.add(uid)

    # -- clients -----------------------------------------------------------------------------

    def add_client(
        self, client: int, *, focus: int | None = None, groups: Iterable[Any] = ()
    ) -> None:
        self._visible.setdefault(client, set())
        self._groups[client] = frozenset(groups)
        for grid in self._grids:
            grid.set_client(client, focus)
        self._grid_clients.add(client)
        self._stale_clients.add(client)

    def remove_client(self, client: int) -> None:
        """Forget ``client`` (it left): nothing is sent to it, its state is dropped."""
        for uid in self._visible.pop(client, set()):
            self._discard(self._holders, uid, client)
        self._groups.pop(client, None)
        for grid in self._grids:
            grid.drop_client(client)
        for uid in self._overridden.pop(client, set()):
            self._discard(self._shown, uid, client)
            self._discard(self._hidden, uid, client)
        self._stale_clients.discard(client)
        self._stale_pairs.pop(client, None)
        self._grid_clients.discard(client)
        self._destroyed.pop(client, None)

    def set_focus(self, client: int, focus: int | None, *, radius: float | None = None) -> None:
        """The object the client's grid range is centred on, and optionally its own radius."""
        for grid in self._grids:
            grid.set_client(client, focus, radius)
        self._grid_clients.add(client)

    def set_groups(self, client: int, groups: Iterable[Any]) -> None:
        self._groups[client] = frozenset(groups)
        self._stale_clients.add(client)

    def groups(self, client: int) -> frozenset[Any]:
        return self._groups.get(client, frozenset())

    def refresh_client(self, client: int) -> None:
        if client in self._visible:
            self._stale_clients.add(client)

    # -- overrides ---------------------------------------------------------------------------

    def show_to(self, uid: int, client: int) -> None:
        """``client`` sees ``uid`` whatever the policy says (unless hidden from it)."""
        self._override(self._shown, uid, client)

    def hide_from(self, uid: int, client: int) -> None:
        """``client`` never sees ``uid``: beats ``show_to`` and every policy."""
        self._override(self._hidden, uid, client)

    def reset(self, uid: int, client: int) -> None:
        """Drop the overrides of the pair: the policy decides again."""
        self._discard(self._shown, uid, client)
        self._discard(self._hidden, uid, client)
        self._discard(self._overridden, client, uid)
        self._stale_pairs.setdefault(client, set()).add(uid)

    def _override(self, table: dict[int, set[int]], uid: int, client: int) -> None:
        if uid not in self.objects or client not in self._visible:
            raise KeyError(f"unknown object {uid} or client {client}")
        table.setdefault(uid, set()).add(client)
        self._overridden.setdefault(client, set()).add(uid)
        self._stale_pairs.setdefault(client, set()).add(uid)

    # -- queries -----------------------------------------------------------------------------

    def visible(self, client: int) -> frozenset[int]:
        """What ``client`` sees as of the last update."""
        return frozenset(self._visible.get(client, ()))

    def can_see(self, client: int, uid: int) -> bool:
        held = self._visible.get(client)
        return held is not None and uid in held

    def may_see(self, client: int, uid: int) -> bool:
        """``can_see``, except for an object added since the last update: the answer it will
        get then, decided now (so that a call right after a spawn is not refused)."""
        if uid in self._placed and uid in self.objects and client in self._visible:
            return self.decide(client, uid)
        return self.can_see(client, uid)

    def holders(self, uid: int) -> frozenset[int]:
        return frozenset(self._holders.get(uid, ()))

    def decide(self, client: int, uid: int) -> bool:
        """The current answer for one pair (precedence: hide_from, show_to, policy)."""
        hidden = self._hidden.get(uid)
        if hidden is not None and client in hidden:
            return False
        shown = self._shown.get(uid)
        if shown is not None and client in shown:
            return True
        return self.policy.test(self.objects[uid], uid, client, self)

    # -- the update --------------------------------------------------------------------------

    def update(self, moved: Iterable[int] = ()) -> dict[int, Delta]:
        """Apply what changed since the last update; return the non-empty deltas per client.

        ``moved``: uids whose position fields changed (only grids read them)."""
        pairs: dict[int, set[int]] = {}
        moved = list(moved)
        if self._placed:
            moved.extend(self._placed - set(moved))
            self._placed = set()
        for grid in self._grids:
            changes = grid.update(moved, self.objects, self._grid_clients)
            for client, uids in changes.items():
                if client in self._visible:
                    pairs.setdefault(client, set()).update(uids)
        if self._grid_clients:
            self._stale_clients |= self._grid_clients & self._visible.keys()
            self._grid_clients = set()
        for client in self._stale_clients:
            pairs.setdefault(client, set()).update(self._candidates(client))
        for uid in self._stale_objects:
            for client in self._object_candidates(uid):
                pairs.setdefault(client, set()).add(uid)
        for client, uids in self._stale_pairs.items():
            pairs.setdefault(client, set()).update(uids)
        self._stale_clients = set()
        self._stale_objects = set()
        self._stale_pairs = {}
        out: dict[int, Delta] = {}
        objects = self.objects
        for client, uids in pairs.items():
            held = self._visible[client]
            entered: set[int] = set()
            left: set[int] = set()
            for uid in uids:
                if uid not in objects:
                    continue
                now = self.decide(client, uid)
                if now != (uid in held):
                    (entered if now else left).add(uid)
            if entered or left:
                held |= entered
                held -= left
                for uid in entered:
                    self._holders.setdefault(uid, set()).add(client)
                for uid in left:
                    self._discard(self._holders, uid, client)
                out[client] = Delta(frozenset(entered), frozenset(left))
        for client, uids in self._destroyed.items():
            prior = out.get(client, Delta())
            out[client] = Delta(prior.entered, prior.left, frozenset(uids))
        self._destroyed = {}
        return out

    def _candidates(self, client: int) -> set[int]:
        """Objects that may be visible to ``client``: within the required grid's range if
        there is one, else every object; plus what it sees and its overrides."""
        if self._scope is not None:
            base = set(self._scope.in_range.get(client, ()))
        else:
            base = set(self.objects)
        base |= self._visible.get(client, set())
        base |= self._overridden.get(client, set())
        return base

    def _object_candidates(self, uid: int) -> set[int]:
        if self._scope is not None:
            base = set(self._scope.seen_by.get(uid, ()))
        else:
            base = set(self._visible)
        base |= self._holders.get(uid, set())
        base |= self._shown.get(uid, set())
        base |= self._hidden.get(uid, set())
        return base & self._visible.keys()

    @staticmethod
    def _discard(table: dict[int, set[int]], key: int, item: int) -> None:
        bucket = table.get(key)
        if bucket is not None:
            bucket.discard(item)
            if not bucket:
                del table[key]


def rpc_target(
    objects: Mapping[int, Any], interest: Interest | None, member: int, uid: int
) -> Any | None:
    """The object an ``rpc`` from ``member`` may address, or None: an object the caller
    cannot see is refused exactly like one that does not exist (``unknown_object``, §8.2),
    so a client learns nothing about objects outside its view."""
    obj = objects.get(uid)
    if obj is None or interest is None:
        return obj
    return obj if interest.may_see(member, uid) else None
