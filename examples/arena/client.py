"""The arena's client process: a pygame-ce window for a person, or a bot that plays itself.

``python examples/arena client PORT [--bot] [--seconds S] [--shots DIR]``. A person moves with
WASD or the arrow keys and shoots with the mouse button (towards the pointer) or space (the way
they last moved). A bot seeks pickups and chases and shoots other players. At the end the
process prints one line ``RESULT <json>``: its membership id, RPCs made and refused (with the
reason), the mean RPC round trip, and the screenshots it saved.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
import pygame
from game import (
    COOLDOWN,
    HEIGHT,
    PICKUP_RADIUS,
    RADIUS,
    SHOT_RANGE,
    TICK_RATE,
    WIDTH,
    Avatar,
    Beam,
    Feed,
    Pickup,
    player_colour,
    player_name,
    unit,
)
from smooth import Predictor

from reverb import (
    Client,
    ReverbManager,
    ReverbSide,
    RpcError,
    client_event_registry,
)

BACKGROUND = (24, 26, 33)
GRID = (34, 37, 46)
TEXT = (220, 222, 228)
DIM = (140, 144, 156)
PICKUP = (255, 214, 92)


class Calls:
    """Every RPC this client makes, with its outcome and round trip."""

    def __init__(self) -> None:
        self.made = 0
        self.answered = 0
        self.refused: Counter[str] = Counter()
        self.expected: list[str] = []  # deliberate refusals, described
        self.rtts: list[float] = []

    def call(self, obj, method, *args, expect: str | None = None, note: str = ""):
        """``obj.compute_server(method, *args)``, counted. ``expect``: the refusal code this
        call is meant to get (a deliberate check); ``note`` says what it tried."""
        self.made += 1
        t0 = time.monotonic()
        future = obj.compute_server(method, *args)

        def done(f) -> None:  # runs on the client's I/O thread: record, nothing else
            self.rtts.append(time.monotonic() - t0)
            error = f.exception()
            if error is None:
                self.answered += 1
            elif isinstance(error, RpcError) and expect is not None and error.code == expect:
                self.expected.append(f"{note} -> {expect} ({error.message})")
            elif isinstance(error, RpcError):
                self.refused[f"{error.code}: {error.message}"] += 1
            else:
                self.refused[type(error).__name__] += 1

        future.add_done_callback(done)
        return future

    def rtt(self) -> float:
        recent = self.rtts[-10:]
        return sum(recent) / len(recent) if recent else 1.0 / TICK_RATE


class Smoothness:
    """How often a moving remote player stands still on screen: drawn from the raw replica
    versus drawn interpolated. A remote player counts as moving on a frame when its replica
    moved within the last 0.1 s."""

    def __init__(self) -> None:
        self.frames = 0
        self.still = {"raw": 0, "interpolated": 0}
        self._last: dict[int, tuple] = {}
        self._moved_at: dict[int, float] = {}

    def frame(self, avatars, me, rendered) -> None:
        now = time.monotonic()
        for a in avatars:
            if a is me or a.uid not in rendered:
                continue
            raw, drawn = (a.x, a.y, a.life), rendered[a.uid]
            last = self._last.get(a.uid)
            self._last[a.uid] = (raw, drawn)
            if last is None or raw[2] != last[0][2]:
                continue  # new, or respawned
            if raw != last[0]:
                self._moved_at[a.uid] = now
            if now - self._moved_at.get(a.uid, -1.0) < 0.1:
                self.frames += 1
                self.still["raw"] += raw == last[0]
                self.still["interpolated"] += drawn == last[1]

    def report(self) -> dict[str, float]:
        n = max(1, self.frames)
        return {k: round(100 * v / n, 1) for k, v in self.still.items()}


class Bot:
    """Seeks the nearest pickup, and shoots at players in range when its gun is loaded."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.next_shot = 0.0
        self.wander_until = 0.0
        self.wander = (0.0, 0.0)

    def decide(self, now, me, pickups, others):
        """Returns (8-way move direction, shot direction or None)."""
        shot = None
        in_range = [(math.dist(me, p), p) for p in others.values()]
        in_range = sorted(d for d in in_range if d[0] < SHOT_RANGE * 0.8)
        if in_range and now >= self.next_shot and self.rng.random() < 0.3:
            target = in_range[0][1]
            shot = unit(target[0] - me[0], target[1] - me[1])
            self.next_shot = now + COOLDOWN + 0.1 + self.rng.uniform(0, 0.4)
        if now < self.wander_until:
            return self.wander, shot
        if self.rng.random() < 0.01:
            self.wander = (self.rng.choice((-1, 0, 1)), self.rng.choice((-1, 0, 1)))
            self.wander_until = now + 0.4
        goals = [(math.dist(me, p), p) for p in pickups] or [
            (math.dist(me, p), p) for p in others.values()
        ]
        if not goals:
            return (0, 0), shot
        gx, gy = min(goals)[1]
        dx, dy = gx - me[0], gy - me[1]
        return (int(dx > 6) - int(dx < -6), int(dy > 6) - int(dy < -6)), shot


def keyboard_direction() -> tuple[int, int]:
    keys = pygame.key.get_pressed()
    dx = int(keys[pygame.K_d] or keys[pygame.K_RIGHT]) - int(
        keys[pygame.K_a] or keys[pygame.K_LEFT]
    )
    dy = int(keys[pygame.K_s] or keys[pygame.K_DOWN]) - int(keys[pygame.K_w] or keys[pygame.K_UP])
    return dx, dy


def run(
    port: int, bot: bool, seconds: float | None, shots: Path | None, fps: int, seed: int
) -> int:
    pygame.display.init()
    pygame.font.init()
    screen = pygame.display.set_mode((WIDTH, HEIGHT))
    font = pygame.font.Font(None, 20)
    big = pygame.font.Font(None, 26)

    ReverbManager.REVERB_SIDE = ReverbSide.CLIENT
    clt = Client(ip="127.0.0.1", port=port)
    calls = Calls()
    smoothness = Smoothness()
    state: dict = {"me": None, "predictor": None}

    @client_event_registry.on_event("synced")
    def on_synced(tick):
        now = time.monotonic()
        me = state["me"]
        if me is not None and state["predictor"] is not None:
            # The server steps its world after each tick, so a sync carries the positions it
            # computed one tick earlier: the input they reflect was sent rtt + 1 tick ago.
            lag = calls.rtt() + 1.0 / TICK_RATE
            state["predictor"].reconcile(me.x, me.y, me.life, now, lag)

    @client_event_registry.on_event("object_spawned")
    def on_spawned(obj):
        if isinstance(obj, Avatar) and obj.is_owner():
            state["me"] = obj
            state["predictor"] = Predictor(obj.x, obj.y, obj.life)

    clt.connect()
    member = clt.member
    me_name = player_name(member)
    pygame.display.set_caption(f"Reverb arena - you are {me_name}")
    brain = Bot(seed * 1000 + (member or 0)) if bot else None
    start = last = time.monotonic()
    end = start + seconds if seconds else None
    shot_at = [] if shots is None or seconds is None else [start + seconds * f for f in (0.4, 0.75)]
    saved: list[str] = []
    sent_dir: tuple[int, int] | None = None
    facing = (1.0, 0.0)
    refusal_tried = False
    loaded_at = 0.0
    frames = 0
    clock = pygame.time.Clock()
    running = True
    try:
        while running and clt.connected:
            now = time.monotonic()
            if end is not None and now >= end:
                break
            dt, last = now - last, now
            clicks = []
            for event in pygame.event.get():
                if event.type == pygame.QUIT or (
                    event.type == pygame.KEYDOWN and event.key == pygame.K_ESCAPE
                ):
                    running = False
                elif event.type == pygame.MOUSEBUTTONDOWN:
                    clicks.append(event.pos)
            ReverbManager.client_sync()  # apply what arrived; fires the events above
            me, predictor = state["me"], state["predictor"]
            feed = next(iter(ReverbManager.get_all_ro_by_type(Feed)), None)
            avatars = ReverbManager.get_all_ro_by_type(Avatar)
            pickups = [(p.x, p.y) for p in ReverbManager.get_all_ro_by_type(Pickup)]
            ReverbManager.interpolate(now)  # remote avatars, at clt.render_time(now)
            rendered = {
                a.uid: (float(a.rendered["x"]), float(a.rendered["y"]))
                for a in avatars
                if "x" in a.rendered and "y" in a.rendered
            }
            others = {a.uid: rendered.get(a.uid, (a.x, a.y)) for a in avatars if a is not me}
            smoothness.frame(avatars, me, rendered)
            shoot = None
            if me is not None and predictor is not None:
                mine = (predictor.x, predictor.y)
                if brain is not None:
                    direction, shoot = brain.decide(now, mine, pickups, others)
                else:
                    direction = keyboard_direction()
                    for cx, cy in clicks:
                        shoot = unit(cx - mine[0], cy - mine[1])
                    if pygame.key.get_pressed()[pygame.K_SPACE]:
                        shoot = facing
                if direction != sent_dir:
                    calls.call(me, me.steer, *direction)  # the input state, owner-only RPC
                    sent_dir = direction
                move = unit(*direction)
                if move != (0.0, 0.0):
                    facing = move
                predictor.advance(move, dt, now)  # prediction: move now, reconcile later
                if shoot is not None and shoot != (0.0, 0.0) and now >= loaded_at:
                    calls.call(me, me.shoot, *shoot)
                    loaded_at = now + COOLDOWN + 0.05  # the server refuses faster shots
                if brain is not None and not refusal_tried and now - start > 2.0:
                    victim = next((a for a in avatars if a is not me), None)
                    if victim is not None:
                        refusal_tried = True  # steer someone else's avatar: the server says no
                        calls.call(
                            victim,
                            victim.steer,
                            1,
                            0,
                            expect="not_owner",
                            note=f"tried to steer {victim.name}'s avatar",
                        )
            draw(screen, font, big, me_name, me, predictor, avatars, rendered, feed, calls)
            pygame.display.flip()
            frames += 1
            if shot_at and now >= shot_at[0]:
                shot_at.pop(0)
                saved.append(screenshot(screen, shots, member, now - start))
            clock.tick(fps)
        if shots is not None:
            saved.append(screenshot(screen, shots, member, time.monotonic() - start))
    finally:
        clt.disconnect()
        pygame.quit()
    me = state["me"]
    result = {
        "member": member,
        "name": me_name,
        "bot": bot,
        "frames": frames,
        "fps": round(frames / max(1e-6, time.monotonic() - start), 1),
        "rpc_made": calls.made,
        "rpc_answered": calls.answered,
        "rpc_refused": dict(calls.refused),
        "expected_refusals": calls.expected,
        "mean_rtt_ms": round(1000 * sum(calls.rtts) / len(calls.rtts), 2) if calls.rtts else None,
        "prediction_error_px": state["predictor"].mean_error() if state["predictor"] else 0.0,
        "interpolation_delay_ms": round(1000 * clt.interpolation_delay, 1),
        "still_frames_pct": smoothness.report(),
        "final_score": me.score if me is not None else None,
        "screenshots": saved,
    }
    print("RESULT " + json.dumps(result), flush=True)
    return 0


def screenshot(screen, directory: Path, member, at: float) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"player-{member}-{at:04.1f}s.png"
    pygame.image.save(screen, str(path))
    return str(path)


def draw(screen, font, big, me_name, me, predictor, avatars, rendered, feed, calls) -> None:
    screen.fill(BACKGROUND)
    for x in range(0, WIDTH, 40):
        pygame.draw.line(screen, GRID, (x, 0), (x, HEIGHT))
    for y in range(0, HEIGHT, 40):
        pygame.draw.line(screen, GRID, (0, y), (WIDTH, y))
    for p in ReverbManager.get_all_ro_by_type(Pickup):
        r = PICKUP_RADIUS
        pts = [(p.x, p.y - r), (p.x + r, p.y), (p.x, p.y + r), (p.x - r, p.y)]
        pygame.draw.polygon(screen, PICKUP, pts)
    for b in ReverbManager.get_all_ro_by_type(Beam):
        colour = (255, 90, 90) if b.hit else player_colour(b.shooter or 1)
        pygame.draw.line(screen, colour, (b.x1, b.y1), (b.x2, b.y2), 3 if b.hit else 2)
    for a in sorted(avatars, key=lambda a: a is me):
        if a is me and predictor is not None:
            x, y = predictor.x, predictor.y  # predicted
        else:
            x, y = rendered.get(a.uid, (a.x, a.y))  # interpolated
        colour = player_colour(a.belonging_membership or 1)
        pygame.draw.circle(screen, colour, (round(x), round(y)), RADIUS)
        if a is me:
            pygame.draw.circle(screen, (255, 255, 255), (round(x), round(y)), RADIUS + 3, 2)
        label = font.render(f"{a.name}: {a.score}", True, TEXT)
        screen.blit(label, (round(x) - label.get_width() // 2, round(y) - RADIUS - 18))
    # HUD: who you are, the scoreboard, the event feed
    title = big.render(f"you are {me_name}", True, TEXT)
    screen.blit(title, (10, 8))
    rtt = f"RPC round trip {1000 * calls.rtt():.1f} ms" if calls.rtts else "RPC round trip -"
    screen.blit(font.render(rtt, True, DIM), (10, 32))
    if feed is not None:
        clock = font.render(f"{feed.remaining:.0f} s left", True, DIM)
        screen.blit(clock, (WIDTH - clock.get_width() - 10, 8))
    board = sorted(avatars, key=lambda a: (-a.score, a.belonging_membership or 0))
    for i, a in enumerate(board):
        text = f"{a.name}  {a.score:3d}  (pickups {a.pickups}, tags {a.tags})"
        row = font.render(text, True, player_colour(a.belonging_membership or 1))
        screen.blit(row, (WIDTH - row.get_width() - 10, 28 + 16 * i))
    if feed is not None:
        for i, line in enumerate(reversed(feed.lines)):
            row = font.render(line, True, TEXT if i == 0 else DIM)
            screen.blit(row, (10, HEIGHT - 20 - 16 * i))
