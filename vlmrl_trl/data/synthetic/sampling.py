"""Random scenes: road layout, light or stop sign, and objects placed so that none hides another."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np

from .camera import Box, obstacle_box, pedestrian_box, rider_box, vehicle_box, visible_min_z
from .scene import (
    ADJACENT_NEAR_MAX_Z,
    DEFAULT_SCALE,
    LineKind,
    Obstacle,
    Pedestrian,
    PedRole,
    Rider,
    ScaleName,
    Scene,
    TrafficLight,
    Vehicle,
    WorldScale,
)

_CAR_COLORS: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("white", (236, 236, 232)),
    ("silver", (178, 183, 190)),
    ("gray", (105, 108, 115)),
    ("black", (30, 30, 34)),
    ("blue", (35, 75, 175)),
    ("dark blue", (28, 38, 92)),
    ("green", (40, 115, 62)),
    ("yellow", (232, 200, 40)),
    ("beige", (205, 185, 140)),
    ("teal", (35, 135, 145)),
    ("brown", (112, 78, 48)),
)
_CLOTHES: tuple[tuple[int, int, int], ...] = (
    (220, 60, 160),
    (40, 160, 230),
    (250, 140, 20),
    (120, 60, 200),
    (30, 200, 120),
    (240, 230, 60),
    (235, 235, 235),
)
_SKIN: tuple[tuple[int, int, int], ...] = ((240, 200, 170), (200, 150, 110), (140, 95, 60), (95, 65, 45))


def pick(rng: np.random.Generator, options: Sequence[Any], p: Sequence[float] | None = None) -> Any:
    """One of ``options`` (with probabilities ``p``), drawn the same way everywhere so streams stay aligned."""
    return options[int(rng.choice(len(options), p=p))]


def _light_x(world: WorldScale, x: float) -> float:
    """The sampled housing position (0.12-0.8) moved into the scale's range, so a big light and its arrows fit."""
    if world.light_x is None:
        return x
    lo, hi = world.light_x
    return lo + (x - 0.12) / (0.8 - 0.12) * (hi - lo)


def sample_scene(rng: np.random.Generator, *, motion: bool = True, scale: ScaleName = DEFAULT_SCALE) -> Scene:
    """A random scene to be drawn at ``scale``; with ``motion=False`` (single-frame clips) no label needs motion."""
    num_lanes = int(pick(rng, (1, 2, 3), (0.12, 0.4, 0.48)))
    ego_lane = int(pick(rng, range(num_lanes), (0.25, 0.5, 0.25) if num_lanes == 3 else None))
    inner: list[LineKind] = [
        pick(rng, ("dashed", "solid", "double_yellow"), (0.62, 0.23, 0.15)) for _ in range(num_lanes - 1)
    ]
    lines: tuple[LineKind, ...] = ("edge", *inner, "edge")
    scene = Scene(
        num_lanes=num_lanes,
        ego_lane=ego_lane,
        lines=lines,
        ego_speed=float(rng.uniform(2.0, 8.0)),
        sky=pick(rng, ("day", "overcast", "dusk"), (0.6, 0.25, 0.15)),
        road_gray=int(rng.integers(70, 105)),
        lateral_jitter=float(rng.uniform(-0.25, 0.25)),
        scenery_seed=int(rng.integers(2**31)),
        scale=scale,
    )
    if num_lanes >= 2 and ego_lane == 0:
        scene.left_turn_lane = bool(rng.random() < 0.2)
    if num_lanes >= 2 and ego_lane == num_lanes - 1:
        scene.right_turn_lane = bool(rng.random() < 0.2)

    if rng.random() < 0.5:
        color = pick(rng, ("red", "yellow", "green"), (0.38, 0.06, 0.56))
        arrows = [True if rng.random() < p_lit else (False if rng.random() < 0.25 else None) for p_lit in (0.12, 0.12)]
        scene.light = TrafficLight(
            color=color,
            left_arrow=arrows[0],
            right_arrow=arrows[1],
            x=_light_x(scene.world, float(pick(rng, (rng.uniform(0.12, 0.32), rng.uniform(0.55, 0.8))))),
            y=float(rng.uniform(0.03, 0.1)),
        )
    elif rng.random() < 0.1:
        scene.stop_sign_z = float(rng.uniform(9.0, 15.0))

    placed: list[Box] = []  # screen boxes of placed objects in the last frame

    # The ego lane holds at most one thing: a vehicle, a rider, or an obstacle (or nothing).
    ego_what = pick(rng, ("vehicle", "rider", "obstacle", "none"), (0.56, 0.07, 0.06, 0.31))
    turn_left_ok = scene.has_lane(-1) and lines[ego_lane] == "dashed"
    turn_right_ok = scene.has_lane(1) and lines[ego_lane + 1] == "dashed"
    turning = 0
    if ego_what == "vehicle":
        kind, name, color = _vehicle_look(rng)
        near = rng.random() < 0.17
        braking = not near and rng.random() < 0.2
        if motion and not near and not braking and rng.random() < 0.45:
            turning = pick(rng, [s for s, ok in ((-1, turn_left_ok), (1, turn_right_ok)) if ok] or [0])
        if near:
            z, v_rel = rng.uniform(4.5, 7.5), rng.uniform(-0.8, 0.8)
        elif braking:
            z, v_rel = rng.uniform(10.0, 14.0), rng.uniform(-2.5, -0.8)
        else:
            z, v_rel = rng.uniform(10.0, 15.0), rng.uniform(-0.6, 1.0)
        v_lat = turning * rng.uniform(1.6, 2.2) if turning else rng.uniform(-0.12, 0.12)
        lead = Vehicle(0, float(z), float(rng.uniform(-0.7, 0.7)), float(v_rel), float(v_lat), kind, name, color)
        lead.braking = bool(braking or (near and rng.random() < 0.5))
        scene.vehicles.append(lead)
        placed.append(vehicle_box(scene, lead))
    elif ego_what == "rider":
        rider = Rider(
            0,
            float(rng.uniform(6.0, 11.0)),
            float(rng.uniform(-0.6, 0.6)),
            float(rng.uniform(-0.6, 0.6)),
            pick(rng, ("bicycle", "motorcycle")),
            pick(rng, _CLOTHES),
        )
        scene.riders.append(rider)
        placed.append(rider_box(scene, rider))
    elif ego_what == "obstacle":
        obstacle = Obstacle(0, float(rng.uniform(6.0, 12.0)), pick(rng, ("cones", "barrier", "box"), (0.5, 0.3, 0.2)))
        scene.obstacles.append(obstacle)
        placed.append(obstacle_box(scene, obstacle))

    # Pedestrians: on a crosswalk in the ego lane, or at a curb stepping in / standing / walking away.
    roll = rng.random()
    if roll < 0.04:
        z = float(rng.uniform(7.0, 12.0))
        scene.crosswalk_z = z - 1.0
        _place_pedestrian(rng, scene, placed, "crossing", x=float(rng.uniform(-1.3, 1.3)), z=z)
    elif roll < 0.2:
        side = pick(rng, (-1, 1))
        edge = scene.boundary_x(0 if side < 0 else num_lanes)
        x = edge + side * float(rng.uniform(-0.15, 0.5))
        stepping = motion and rng.random() < 0.5
        _place_pedestrian(rng, scene, placed, "stepping_in" if stepping else "curb", x=x, side=side)
    if rng.random() < 0.35:
        side = pick(rng, (-1, 1))
        x = scene.boundary_x(0 if side < 0 else num_lanes) + side * float(rng.uniform(1.3, 2.6))
        _place_pedestrian(rng, scene, placed, "sidewalk", x=x, side=side)

    # Neighbouring lanes: vehicles (near ones block a lane change), some riders and cones.
    for rel in (-1, 1):
        if not scene.has_lane(rel) or (rel == turning):
            continue
        roll = rng.random()
        near = rng.random() < 0.5
        if roll < 0.5:
            kind, name, color = _vehicle_look(rng)
            signal = pick(rng, (None, "left", "right"), (0.8, 0.1, 0.1))
            vehicle = Vehicle(
                rel,
                0.0,
                float(rng.uniform(-0.4, 0.4)),
                float(rng.uniform(-2.5, 2.5)),
                0.0,
                kind,
                name,
                color,
                braking=bool(rng.random() < 0.2),
                signal=signal,
            )
            _place_in_lane(rng, scene, placed, vehicle, near, vehicle_box)
        elif roll < 0.58:
            rider = Rider(
                rel,
                0.0,
                float(rng.uniform(-0.5, 0.5)),
                float(rng.uniform(-1.0, 1.0)),
                pick(rng, ("bicycle", "motorcycle")),
                pick(rng, _CLOTHES),
            )
            _place_in_lane(rng, scene, placed, rider, near, rider_box)
        elif roll < 0.64:
            obstacle = Obstacle(rel, 0.0, pick(rng, ("cones", "barrier", "box"), (0.5, 0.3, 0.2)))
            _place_in_lane(rng, scene, placed, obstacle, near, obstacle_box)
    # Far traffic two lanes away, purely scenery.
    for rel in (-2, 2):
        if scene.has_lane(rel) and rng.random() < 0.4:
            kind, name, color = _vehicle_look(rng)
            vehicle = Vehicle(rel, 0.0, 0.0, float(rng.uniform(-2.0, 2.0)), 0.0, kind, name, color)
            _place_in_lane(rng, scene, placed, vehicle, False, vehicle_box)
    return scene


def _vehicle_look(rng: np.random.Generator) -> tuple[Literal["car", "van", "truck"], str, tuple[int, int, int]]:
    name, color = pick(rng, _CAR_COLORS)
    return pick(rng, ("car", "van", "truck"), (0.7, 0.2, 0.1)), name, color


def _overlaps(box: Box, placed: list[Box]) -> bool:
    """True when ``box`` covers more than 20% of a placed box or a placed box covers 20% of it."""
    for other in placed:
        w = min(box[2], other[2]) - max(box[0], other[0])
        h = min(box[3], other[3]) - max(box[1], other[1])
        if w > 0 and h > 0:
            inter = w * h
            area_a = (box[2] - box[0]) * (box[3] - box[1])
            area_b = (other[2] - other[0]) * (other[3] - other[1])
            if inter > 0.2 * min(area_a, area_b):
                return True
    return False


def _place_in_lane(
    rng: np.random.Generator,
    scene: Scene,
    placed: list[Box],
    obj: Vehicle | Rider | Obstacle,
    near: bool,
    box_fn: Callable[[Scene, Any], Box],
) -> None:
    """Give ``obj`` a distance (near: blocks a lane change) that keeps it visible and unoccluded, or drop it."""
    x = scene.lane_center_x(obj.rel_lane)
    lo = max(visible_min_z(x + math.copysign(1.3, x)), 6.0)
    for _ in range(8):
        if near:
            if lo > ADJACENT_NEAR_MAX_Z - 0.5:
                return
            obj.z = float(rng.uniform(lo, ADJACENT_NEAR_MAX_Z - 0.5))
        else:
            obj.z = float(rng.uniform(max(lo, ADJACENT_NEAR_MAX_Z + 2.5), 24.0))
        box = box_fn(scene, obj)
        if not _overlaps(box, placed):
            placed.append(box)
            if isinstance(obj, Vehicle):
                scene.vehicles.append(obj)
            elif isinstance(obj, Rider):
                scene.riders.append(obj)
            else:
                scene.obstacles.append(obj)
            return


def _place_pedestrian(
    rng: np.random.Generator,
    scene: Scene,
    placed: list[Box],
    role: PedRole,
    *,
    x: float,
    z: float | None = None,
    side: int = 1,
) -> None:
    """Add a pedestrian whose motion fits its role; the last-frame position does not reveal the role."""
    speed = float(rng.uniform(1.3, 1.9))
    v_x, v_z = 0.0, 0.0
    if role == "crossing":
        v_x = speed * pick(rng, (-1, 1))
    elif role == "stepping_in":
        v_x = -side * speed
    elif role == "curb":  # standing, walking away from the road, or along the curb
        v_x, v_z = pick(rng, ((0.0, 0.0), (side * speed, 0.0), (0.0, speed * pick(rng, (-1, 1)))))
    else:
        v_z = speed * pick(rng, (-1, 1))
    ped = Pedestrian(x, 0.0, v_x, v_z, role, pick(rng, _CLOTHES), pick(rng, _SKIN))
    lo = max(visible_min_z(x + math.copysign(0.6, x)), 7.0)
    for _ in range(8):
        ped.z = z if z is not None else float(rng.uniform(lo, max(lo + 5.0, 15.0)))
        box = pedestrian_box(scene, ped)
        if not _overlaps(box, placed):
            placed.append(box)
            scene.pedestrians.append(ped)
            return
        if z is not None:
            break
    if role != "sidewalk":  # curb and road pedestrians must exist (alike, so placement reveals no role)
        placed.append(pedestrian_box(scene, ped))
        scene.pedestrians.append(ped)
        scene.vehicles = [v for v in scene.vehicles if not _overlaps(vehicle_box(scene, v), [placed[-1]])]
        scene.riders = [r for r in scene.riders if not _overlaps(rider_box(scene, r), [placed[-1]])]
        scene.obstacles = [o for o in scene.obstacles if not _overlaps(obstacle_box(scene, o), [placed[-1]])]
