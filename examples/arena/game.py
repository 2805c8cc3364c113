"""The arena's replicated types and its rules, shared by the server and the clients.

Naming, everywhere (server log, window caption, HUD, summary): "player N" is the client whose
membership id is N — the id the server gave the connection (``clt.member``). Its avatar's
``belonging_membership`` is N and its ``name`` is "player N".
"""

from __future__ import annotations

import math

from reverb import Field, ReverbManager, ReverbObject, RpcError, expose

WIDTH, HEIGHT = 640, 480  # the arena, in pixels; also the window's size
TICK_RATE = 30.0  # server ticks per second
SPEED = 170.0  # avatar speed, px/s
RADIUS = 13  # avatar radius, px
PICKUP_RADIUS = 7
PICKUP_REACH = RADIUS + PICKUP_RADIUS + 2  # centre distance at which a pickup is taken
MAX_PICKUPS = 6
PICKUP_EVERY = 0.6  # s between pickup spawns while below MAX_PICKUPS
PICKUP_LIFETIME = (4.0, 8.0)  # s; an untaken pickup despawns after this
SHOT_RANGE = 260.0  # px
HIT_RADIUS = 18.0  # a shot hits an avatar whose centre is this close to the ray
COOLDOWN = 0.5  # s between two shots of one player
SPAWN_GRACE = 1.0  # s of protection after (re)spawning
BEAM_LIFETIME = 0.25  # s a shot stays visible
FEED_LINES = 6  # the event feed keeps this many lines
TAG_POINTS = 3
PICKUP_POINTS = 1


def player_name(member: int | None) -> str:
    return f"player {member}" if member is not None else "the server"


def player_colour(member: int) -> tuple[int, int, int]:
    palette = [(235, 87, 87), (86, 204, 242), (111, 207, 151), (242, 201, 76), (187, 107, 217)]
    return palette[(member - 1) % len(palette)]


def clamp_to_arena(x: float, y: float) -> tuple[float, float]:
    return (min(max(x, RADIUS), WIDTH - RADIUS), min(max(y, RADIUS), HEIGHT - RADIUS))


def unit(dx: float, dy: float) -> tuple[float, float]:
    """``(dx, dy)`` scaled to length 1 (8-way keyboard input becomes a unit vector)."""
    length = math.hypot(dx, dy)
    return (0.0, 0.0) if length == 0 else (dx / length, dy / length)


def check_direction(dx: object, dy: object) -> tuple[float, float]:
    """Validate a direction sent by a client (never trust the wire)."""
    for v in (dx, dy):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not -1 <= v <= 1:
            raise RpcError("direction components must be numbers in [-1, 1]")
    return unit(float(dx), float(dy))  # type: ignore[arg-type]


@ReverbManager.reverb_object_attribute
class Avatar(ReverbObject):
    """One player. Moved by the server from its owner's input state (``steer``)."""

    __reverb_fields__ = ("name", "x", "y", "score", "pickups", "tags", "tagged", "life")
    # Clients draw remote avatars interpolated (guide §15); a jump faster than 4x the top speed
    # is drawn as a jump. A respawn is also marked with teleport().
    __reverb_interpolate__ = (Field("x", snap_speed=4 * SPEED), Field("y", snap_speed=4 * SPEED))

    def __init__(
        self, name="?", x=0.0, y=0.0, uid=None, add_on_init=True, belonging_membership=None
    ):
        self.name = name
        self.x = x
        self.y = y
        self.score = 0
        self.pickups = 0  # pickups taken
        self.tags = 0  # other players tagged
        self.tagged = 0  # times tagged by others
        self.life = 0  # +1 on every respawn: clients snap instead of sliding across the map
        # server-only state (not replicated: not listed in __reverb_fields__)
        self.input = (0.0, 0.0)
        self.next_shot = 0.0
        self.protected_until = 0.0
        super().__init__(
            name, x, y, uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )

    @expose
    def steer(self, dx, dy):
        """The owner's input state: a direction, at most length 1. The server moves the avatar
        by it every tick until the next ``steer``."""
        self.input = check_direction(dx, dy)

    @expose
    def shoot(self, dx, dy):
        """Fire along ``(dx, dy)``; returns the membership id of the player hit, or None."""
        direction = check_direction(dx, dy)
        if direction == (0.0, 0.0):
            raise RpcError("no direction")
        rules = Rules.current
        assert rules is not None
        return rules.shoot(self, direction)


@ReverbManager.reverb_object_attribute
class Pickup(ReverbObject):
    def __init__(self, x=0.0, y=0.0, uid=None, add_on_init=True, belonging_membership=None):
        self.x = x
        self.y = y
        super().__init__(
            x, y, uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )


@ReverbManager.reverb_object_attribute
class Beam(ReverbObject):
    """A shot, visible for BEAM_LIFETIME: from the shooter to where the ray ended."""

    def __init__(
        self,
        x1=0.0,
        y1=0.0,
        x2=0.0,
        y2=0.0,
        shooter=0,
        uid=None,
        add_on_init=True,
        belonging_membership=None,
    ):
        self.x1, self.y1, self.x2, self.y2 = x1, y1, x2, y2
        self.shooter = shooter
        self.hit = False
        super().__init__(
            x1,
            y1,
            x2,
            y2,
            shooter,
            uid=uid,
            add_on_init=add_on_init,
            belonging_membership=belonging_membership,
        )


@ReverbManager.reverb_object_attribute
class Feed(ReverbObject):
    """The event feed: the last FEED_LINES events as text, and the seconds left in the round.

    (A replicated bounded list for now; named server messages will replace it.)"""

    def __init__(self, uid=None, add_on_init=True, belonging_membership=None):
        self.lines: list[str] = []
        self.remaining = 0.0
        super().__init__(
            uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )

    def post(self, line: str) -> None:
        self.lines = [*self.lines, line][-FEED_LINES:]


class Rules:
    """The server's rules (used only by the server process). ``Rules.current`` is the running
    instance, so that exposed methods can reach it."""

    current: Rules | None = None

    def __init__(self, rng, now: float) -> None:
        self.rng = rng
        self.now = now
        self.avatars: dict[int, Avatar] = {}
        self.pickups: dict[int, tuple[Pickup, float]] = {}  # uid -> (pickup, expiry)
        self.beams: list[tuple[Beam, float]] = []
        self.feed = Feed()
        self.next_pickup = now
        self.counts = {
            "pickups_spawned": 0,
            "pickups_taken": 0,
            "pickups_expired": 0,
            "shots": 0,
            "hits": 0,
        }
        Rules.current = self

    def log(self, line: str) -> None:
        self.feed.post(line)
        print(f"[server] {line}", flush=True)

    def free_spot(self) -> tuple[float, float]:
        margin = 40
        return (
            round(self.rng.uniform(margin, WIDTH - margin), 1),
            round(self.rng.uniform(margin, HEIGHT - margin), 1),
        )

    def join(self, member: int) -> Avatar:
        x, y = self.free_spot()
        avatar = Avatar(player_name(member), x, y, belonging_membership=member)
        avatar.protected_until = self.now + SPAWN_GRACE
        self.avatars[member] = avatar
        self.log(f"{avatar.name} joined")
        return avatar

    def leave(self, member: int) -> None:
        avatar = self.avatars.pop(member, None)
        if avatar is not None:
            self.log(f"{avatar.name} left with {avatar.score} points")
            avatar.destroy()

    def step(self, now: float) -> None:
        """Advance the world to ``now``: movement, pickups, expiry."""
        dt = min(now - self.now, 0.25)
        self.now = now
        for avatar in self.avatars.values():
            dx, dy = avatar.input
            if dx or dy:
                x, y = clamp_to_arena(avatar.x + dx * SPEED * dt, avatar.y + dy * SPEED * dt)
                avatar.x, avatar.y = round(x, 1), round(y, 1)
            for uid, (pickup, _) in list(self.pickups.items()):
                if math.hypot(pickup.x - avatar.x, pickup.y - avatar.y) <= PICKUP_REACH:
                    del self.pickups[uid]
                    pickup.destroy()
                    avatar.score += PICKUP_POINTS
                    avatar.pickups += 1
                    self.counts["pickups_taken"] += 1
                    self.log(f"{avatar.name} took a pickup (+{PICKUP_POINTS})")
        for uid, (pickup, expiry) in list(self.pickups.items()):
            if now >= expiry:
                del self.pickups[uid]
                pickup.destroy()
                self.counts["pickups_expired"] += 1
        if len(self.pickups) < MAX_PICKUPS and now >= self.next_pickup:
            pickup = Pickup(*self.free_spot())
            assert pickup.uid is not None
            self.pickups[pickup.uid] = (pickup, now + self.rng.uniform(*PICKUP_LIFETIME))
            self.counts["pickups_spawned"] += 1
            self.next_pickup = now + PICKUP_EVERY
        for beam, expiry in list(self.beams):
            if now >= expiry:
                self.beams.remove((beam, expiry))
                beam.destroy()

    def shoot(self, shooter: Avatar, direction: tuple[float, float]) -> int | None:
        """The hit rule: a ray of SHOT_RANGE from the shooter's centre; the nearest other
        unprotected avatar whose centre lies within HIT_RADIUS of the ray is tagged."""
        if self.now < shooter.next_shot:
            raise RpcError("reloading")
        shooter.next_shot = self.now + COOLDOWN
        self.counts["shots"] += 1
        ux, uy = direction
        best: tuple[float, Avatar] | None = None
        for other in self.avatars.values():
            if other is shooter or self.now < other.protected_until:
                continue
            rx, ry = other.x - shooter.x, other.y - shooter.y
            along = rx * ux + ry * uy
            if 0 < along <= SHOT_RANGE and abs(rx * uy - ry * ux) <= HIT_RADIUS:
                if best is None or along < best[0]:
                    best = (along, other)
        reach = best[0] if best else SHOT_RANGE
        end = clamp_to_arena(shooter.x + ux * reach, shooter.y + uy * reach)
        beam = Beam(
            shooter.x, shooter.y, round(end[0], 1), round(end[1], 1), shooter.belonging_membership
        )
        self.beams.append((beam, self.now + BEAM_LIFETIME))
        if best is None:
            return None
        target = best[1]
        beam.hit = True
        self.counts["hits"] += 1
        shooter.score += TAG_POINTS
        shooter.tags += 1
        target.tagged += 1
        target.x, target.y = self.free_spot()
        target.life += 1
        target.teleport()  # clients snap to the respawn point (protocol §13.5)
        target.protected_until = self.now + SPAWN_GRACE
        self.log(f"{shooter.name} tagged {target.name} (+{TAG_POINTS})")
        return target.belonging_membership
