"""reverb/interpolation.py: snapshot buffer, render timeline and manager, on a stepped clock."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from reverb.interpolation import (
    DEGREES,
    RADIANS,
    Field,
    InterpolationManager,
    RenderTimeline,
    SnapshotBuffer,
)

TICK = 0.1


def x_at(buffer: SnapshotBuffer, t: float, **kwargs: float) -> float:
    value = buffer.sample(t, **kwargs)["x"]
    assert isinstance(value, float)
    return value


# -- buffer ----------------------------------------------------------------------------------


def test_linear_between_states() -> None:
    buffer = SnapshotBuffer(["x", "y"])
    buffer.push(0.0, {"x": 0, "y": 10})
    buffer.push(0.1, {"x": 10, "y": 10})
    assert buffer.sample(0.025) == {"x": pytest.approx(2.5), "y": pytest.approx(10.0)}
    assert x_at(buffer, 0.1) == 10.0
    assert buffer.sample(-1.0) == {"x": 0, "y": 10}  # before the oldest: hold it


def test_an_unchanged_field_keeps_its_exact_value_and_type() -> None:
    buffer = SnapshotBuffer(["x", "hp"], tick_interval=TICK)
    buffer.push(0.0, {"x": 0, "hp": 100})
    buffer.push(0.1, {"x": 1})
    assert buffer.sample(0.05) == {"x": 0.5, "hp": 100}
    assert type(buffer.sample(0.05)["hp"]) is int
    assert type(buffer.sample(0.15)["hp"]) is int  # extrapolated x, held hp


def test_out_of_order_pushes_are_put_in_time_order() -> None:
    buffer = SnapshotBuffer(["x"])
    buffer.push(0.2, {"x": 20.0})
    buffer.push(0.0, {"x": 0.0})
    buffer.push(0.1, {"x": 10.0})
    assert buffer.times == (0.0, 0.1, 0.2)
    assert x_at(buffer, 0.05) == pytest.approx(5.0)
    assert x_at(buffer, 0.15) == pytest.approx(15.0)
    assert buffer.latest() == {"x": 20.0}


def test_parts_of_one_tick_merge_and_changed_fields_suffice() -> None:
    buffer = SnapshotBuffer(["x", "y"])
    buffer.push(0.0, {"x": 0.0, "y": 0.0})
    buffer.push(0.1, {"x": 10.0})
    buffer.push(0.1, {"y": 4.0})  # another part of the same tick
    buffer.push(0.2, {"x": 20.0})  # y unchanged: not sent
    assert buffer.times == (0.0, 0.1, 0.2)
    assert buffer.sample(0.15) == {"x": pytest.approx(15.0), "y": pytest.approx(4.0)}


def test_a_late_state_fills_forward_into_newer_ones() -> None:
    buffer = SnapshotBuffer(["x", "y"])
    buffer.push(0.0, {"x": 0.0, "y": 0.0})
    buffer.push(0.2, {"x": 20.0})
    buffer.push(0.1, {"y": 5.0})  # arrives late; y stayed 5 at 0.2
    assert buffer.sample(0.2)["y"] == 5.0


def test_undeclared_fields_are_not_buffered() -> None:
    buffer = SnapshotBuffer(["x"])
    buffer.push(0.0, {"x": 1.0, "name": "bob"})
    assert buffer.sample(0.0) == {"x": 1.0}


def test_buffer_is_bounded_and_drops_the_oldest() -> None:
    buffer = SnapshotBuffer(["x"], capacity=4)
    for i in range(10):
        buffer.push(i * TICK, {"x": float(i)})
    assert len(buffer) == 4
    assert buffer.times == pytest.approx((0.6, 0.7, 0.8, 0.9))
    buffer.push(0.05, {"x": -1.0})  # older than everything in a full buffer
    assert len(buffer) == 4 and buffer.times[0] == pytest.approx(0.6)
    assert x_at(buffer, 0.0) == 6.0


def test_a_gap_of_ticks_means_the_object_held_still() -> None:
    # A server sends only changes: no state for 10 ticks means x stayed 0 until the tick before.
    buffer = SnapshotBuffer(["x"], tick_interval=TICK)
    buffer.push(0.0, {"x": 0.0})
    buffer.push(1.0, {"x": 10.0})
    assert x_at(buffer, 0.5) == 0.0
    assert x_at(buffer, 0.95) == pytest.approx(5.0)


def test_extrapolation_is_bounded_then_holds() -> None:
    buffer = SnapshotBuffer(["x"], tick_interval=TICK)  # at most one tick ahead
    buffer.push(0.0, {"x": 0.0})
    buffer.push(0.1, {"x": 1.0})  # 10 units per second
    assert x_at(buffer, 0.15) == pytest.approx(1.5)
    assert x_at(buffer, 0.2) == pytest.approx(2.0)
    assert x_at(buffer, 0.3) == pytest.approx(2.0)
    assert x_at(buffer, 50.0) == pytest.approx(2.0)


def test_extrapolation_bound_is_configurable_and_can_be_off() -> None:
    buffer = SnapshotBuffer(["x"], max_extrapolation=0.02)
    buffer.push(0.0, {"x": 0.0})
    buffer.push(0.1, {"x": 1.0})
    assert x_at(buffer, 1.0) == pytest.approx(1.2)
    off = SnapshotBuffer(["x"], max_extrapolation=0.0)
    off.push(0.0, {"x": 0.0})
    off.push(0.1, {"x": 1.0})
    assert x_at(off, 1.0) == 1.0


def test_no_extrapolation_once_a_later_sync_showed_the_object_unchanged() -> None:
    buffer = SnapshotBuffer(["x"], tick_interval=TICK)
    buffer.push(0.0, {"x": 0.0})
    buffer.push(0.1, {"x": 1.0})
    assert x_at(buffer, 0.15, held_until=0.1) == pytest.approx(1.5)  # nothing newer heard
    assert x_at(buffer, 0.15, held_until=0.2) == 1.0  # tick 0.2 came without it: it stopped


def test_teleport_snaps_instead_of_smearing() -> None:
    buffer = SnapshotBuffer(["x"], tick_interval=TICK)
    buffer.push(0.0, {"x": 0.0})
    buffer.push(0.1, {"x": 1.0})
    buffer.push(0.2, {"x": 500.0}, teleport=True)
    assert x_at(buffer, 0.15) == 1.0
    assert x_at(buffer, 0.199) == 1.0
    assert x_at(buffer, 0.2) == 500.0
    assert x_at(buffer, 0.25) == 500.0  # and no extrapolation from across the jump


def test_a_jump_faster_than_snap_speed_snaps() -> None:
    buffer = SnapshotBuffer(["x", "y"], tick_interval=TICK, snap_speed=100.0)
    buffer.push(0.0, {"x": 0.0, "y": 0.0})
    buffer.push(0.1, {"x": 50.0, "y": 5.0})  # x: 500/s, a teleport; y: 50/s, movement
    assert buffer.sample(0.05) == {"x": 0.0, "y": pytest.approx(2.5)}
    assert buffer.sample(0.15) == {"x": 50.0, "y": pytest.approx(7.5)}


def test_per_field_snap_speed_overrides_the_buffer() -> None:
    buffer = SnapshotBuffer([Field("x", snap_speed=10.0), "y"], snap_speed=1000.0)
    buffer.push(0.0, {"x": 0.0, "y": 0.0})
    buffer.push(0.1, {"x": 5.0, "y": 5.0})
    assert buffer.sample(0.05) == {"x": 0.0, "y": pytest.approx(2.5)}


def test_degrees_wrap_through_180_not_0() -> None:
    buffer = SnapshotBuffer(["x", Field("angle", period=DEGREES)])
    buffer.push(0.0, {"angle": 179.0})
    buffer.push(0.1, {"angle": -179.0})
    mid = buffer.sample(0.05)["angle"]
    assert isinstance(mid, float) and abs(mid) == pytest.approx(180.0)
    assert buffer.sample(0.025)["angle"] == pytest.approx(179.5)
    assert buffer.sample(0.075)["angle"] == pytest.approx(-179.5)


def test_degrees_in_0_360_stay_in_0_360() -> None:
    buffer = SnapshotBuffer([Field("heading", period=DEGREES)])
    buffer.push(0.0, {"heading": 350.0})
    buffer.push(0.1, {"heading": 10.0})
    assert buffer.sample(0.025)["heading"] == pytest.approx(355.0)
    assert buffer.sample(0.075)["heading"] == pytest.approx(5.0)


def test_radians_wrap_and_extrapolate_across_pi() -> None:
    buffer = SnapshotBuffer([Field("a", period=RADIANS)], max_extrapolation=0.1)
    buffer.push(0.0, {"a": 3.0})
    buffer.push(0.1, {"a": -3.0})  # +0.283 rad through pi
    mid = buffer.sample(0.05)["a"]
    assert isinstance(mid, float) and abs(mid) == pytest.approx(math.pi, abs=1e-9)
    ahead = buffer.sample(0.2)["a"]
    assert ahead == pytest.approx(-3.0 + (2 * math.pi - 6.0))


def test_non_numeric_and_non_finite_values_pass_through_as_the_newest() -> None:
    buffer = SnapshotBuffer(["x", "label", "alive", "hp"])
    buffer.push(0.0, {"x": 0.0, "label": "a", "alive": True, "hp": math.nan})
    buffer.push(0.1, {"x": 1.0, "label": "b", "alive": False, "hp": 5.0})
    buffer.push(0.2, {"x": 2.0, "label": "c"})
    assert buffer.sample(0.05) == {
        "x": pytest.approx(0.5),
        "label": "c",
        "alive": False,
        "hp": 5.0,
    }
    assert buffer.sample(-1.0)["label"] == "c"


def test_bad_declarations_are_refused() -> None:
    with pytest.raises(ValueError):
        SnapshotBuffer(["x", "x"])
    with pytest.raises(ValueError):
        Field("a", period=0.0)
    with pytest.raises(ValueError):
        SnapshotBuffer(["x"], capacity=1)
    with pytest.raises(ValueError):
        SnapshotBuffer(["x"]).push(math.nan, {"x": 1.0})


def test_empty_buffer_samples_empty_and_clear_empties() -> None:
    buffer = SnapshotBuffer(["x"])
    assert buffer.sample(1.0) == {} and buffer.newest_time is None
    buffer.push(0.0, {"x": 1.0})
    buffer.clear()
    assert len(buffer) == 0 and buffer.sample(0.0) == {}


# -- timeline --------------------------------------------------------------------------------


def feed(timeline: RenderTimeline, start_tick: int, ticks: int, jitter: float, seed: int) -> None:
    rng = random.Random(seed)
    arrived = -math.inf
    for tick in range(start_tick, start_tick + ticks):
        ts = tick * TICK
        arrived = max(arrived, ts + 0.05 + rng.uniform(-jitter, jitter))  # in order, like TCP
        timeline.observe(ts, arrived + 100.0)


def test_delay_is_two_ticks_on_a_steady_link() -> None:
    timeline = RenderTimeline(tick_interval=TICK)
    feed(timeline, 0, 300, 0.0, 1)
    assert timeline.jitter == pytest.approx(0.0)
    assert timeline.delay == pytest.approx(2 * TICK)


def test_delay_adapts_up_with_jitter_and_back_down() -> None:
    timeline = RenderTimeline(tick_interval=TICK / 3)  # 30 Hz
    feed(timeline, 0, 300, 0.0, 1)
    calm = timeline.delay
    assert calm == pytest.approx(2 * TICK / 3)
    feed(timeline, 300, 600, 0.08, 2)  # ±80 ms
    jittery = timeline.delay
    assert jittery > calm * 1.5
    assert timeline.jitter > 0.02
    feed(timeline, 900, 900, 0.0, 3)
    assert timeline.delay < jittery * 0.8
    assert timeline.delay == pytest.approx(calm, abs=0.005)


def test_delay_is_clamped_to_max_ticks() -> None:
    timeline = RenderTimeline(tick_interval=TICK, max_ticks=3.0, delay_smoothing=1.0)
    feed(timeline, 0, 300, 1.0, 4)
    assert timeline.delay == pytest.approx(3 * TICK)


def test_render_time_is_delay_behind_the_arrivals_and_never_runs_back() -> None:
    timeline = RenderTimeline(tick_interval=TICK)
    assert not timeline.ready and timeline.render_time(5.0) == 5.0
    for tick in range(50):
        timeline.observe(tick * TICK, tick * TICK + 0.05 + 100.0)
    now = 49 * TICK + 0.05 + 100.0
    assert timeline.render_time(now) == pytest.approx(49 * TICK - 2 * TICK)
    # The arrival offset grows by 40 ms (more latency): render time slows, never reverses.
    values = [timeline.render_time(now + i / 60) for i in range(1, 240)]
    for tick in range(50, 100):
        timeline.observe(tick * TICK, tick * TICK + 0.09 + 100.0)
    values += [timeline.render_time(now + i / 60) for i in range(240, 600)]
    steps = [b - a for a, b in itertools.pairwise(values)]
    assert min(steps) >= 0.9 / 60 - 1e-9
    assert max(steps) <= 1.1 / 60 + 1e-9


def test_render_time_snaps_forward_when_the_server_time_jumps() -> None:
    timeline = RenderTimeline(tick_interval=TICK, snap_threshold=0.5)
    for tick in range(10):
        timeline.observe(tick * TICK, 100.0 + tick * TICK)
    timeline.render_time(101.0)
    timeline.observe(10.0, 101.0)  # 9 s ahead: no network delay explains an early arrival
    assert timeline.render_time(101.0) == pytest.approx(10.0 - timeline.delay)


def test_late_syncs_do_not_snap_the_render_time_back() -> None:
    timeline = RenderTimeline(tick_interval=TICK, snap_threshold=0.5)
    for tick in range(10):
        timeline.observe(tick * TICK, 100.0 + tick * TICK)
    before = timeline.render_time(101.0)
    for tick in range(10, 20):  # a 2 s stall, then everything at once
        timeline.observe(tick * TICK, 103.0)
    assert timeline.render_time(103.0) > before


# -- manager ---------------------------------------------------------------------------------


def test_manager_interpolates_every_tracked_object() -> None:
    manager: InterpolationManager[int] = InterpolationManager(tick_interval=TICK)
    manager.track(1, ["x"])
    manager.track(2, ["x", Field("angle", period=DEGREES)])
    assert 1 in manager and len(manager) == 2
    for tick in range(20):
        ts = tick * TICK
        manager.push(1, ts, {"x": float(tick)})
        manager.push(2, ts, {"x": -float(tick), "angle": 170.0 + tick})
        manager.push(3, ts, {"x": 0.0})  # not tracked: ignored
        manager.observe_sync(ts, ts + 0.05 + 100.0)
    now = 19 * TICK + 0.05 + 100.0
    frame = manager.interpolate(now)
    render = manager.render_time(now)
    assert set(frame) == {1, 2}
    assert frame[1]["x"] == pytest.approx(render / TICK)
    assert frame[2]["angle"] == pytest.approx(170.0 + render / TICK)  # 0..360 stays 0..360
    assert manager.sample(1, 0.55) == {"x": pytest.approx(5.5)}
    manager.untrack(1)
    assert 1 not in manager and set(manager.sample_all(1.0)) == {2}
    assert manager.buffer(2).fields[1].period == DEGREES


def test_manager_holds_an_object_that_a_later_sync_left_out() -> None:
    manager: InterpolationManager[str] = InterpolationManager(tick_interval=TICK)
    manager.track("p", ["x"])
    manager.push("p", 0.0, {"x": 0.0})
    manager.push("p", 0.1, {"x": 1.0})
    manager.observe_sync(0.1, 1.0)
    assert manager.sample("p", 0.15)["x"] == pytest.approx(1.5)
    manager.observe_sync(0.2, 1.1)  # tick 0.2: "p" did not change
    assert manager.sample("p", 0.15)["x"] == 1.0


def test_a_real_state_at_a_held_tick_replaces_the_inferred_hold() -> None:
    buffer = SnapshotBuffer(["x"], tick_interval=TICK)
    buffer.push(0.0, {"x": 0.0})
    buffer.push(1.0, {"x": 10.0})  # infers "held 0 until 0.9"
    buffer.push(0.9, {"x": 9.0})  # but tick 0.9 arrives late after all
    assert x_at(buffer, 0.45) == pytest.approx(4.5)


def test_extrapolation_leaves_non_numeric_fields_as_the_newest() -> None:
    buffer = SnapshotBuffer(["x", "label"], tick_interval=TICK)
    buffer.push(0.0, {"x": 0.0, "label": "a"})
    buffer.push(0.1, {"x": 1.0, "label": "b"})
    assert buffer.sample(0.15) == {"x": pytest.approx(1.5), "label": "b"}


def test_timeline_refuses_bad_configuration_and_ignores_non_finite_times() -> None:
    with pytest.raises(ValueError):
        RenderTimeline(tick_interval=0.0)
    with pytest.raises(ValueError):
        RenderTimeline(tick_interval=TICK, min_ticks=3.0, max_ticks=2.0)
    with pytest.raises(ValueError):
        RenderTimeline(tick_interval=TICK, max_rate_change=1.0)
    manager: InterpolationManager[int] = InterpolationManager(tick_interval=TICK)
    manager.observe_sync(math.nan, 1.0)
    assert not manager.timeline.ready
