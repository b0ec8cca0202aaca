"""Procedural dashcam clips labelled by BDD-OIA's rules: the offline stand-in for the real data set.

A clip is a :class:`Scene` (road layout, traffic light, stop sign, vehicles, pedestrians, riders, obstacles)
rendered in a simple perspective view into ``num_frames`` frames taken ``FRAME_INTERVAL_S`` apart, the last
frame being "now". Labels follow from the scene by :func:`scene_labels` (rules mirroring BDD-OIA's
definitions) and every clip gets a short natural-language description from :func:`describe_scene`.
Two labels depend on motion only: a front car drifting out of the lane (reasons 9 and 12) and a pedestrian
stepping off the curb (reason 4) look, in the last frame alone, exactly like their static counterparts.
:func:`generate_synthetic` writes the official BDD-OIA layout so that :func:`~vlmrl_trl.data.load_bddoia`
reads it like the real data.
"""

from __future__ import annotations

import io
import json
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageDraw

from ..schema import NUM_ACTIONS, NUM_REASONS
from .bddoia import SPLITS  # the layout it writes: the same splits, in the order that seeds them

FRAME_INTERVAL_S = 0.5  # time between consecutive frames of a clip
LANE_WIDTH_M = 3.5
INFO_FILE = "synthetic_info.json"

# Camera: horizon at 38% of the height, focal length 0.7 times the width, a high camera so that the ego lane
# spans 80% of the bottom row. Objects are drawn EXAG times their real size so they stay legible at 128 px.
_HORIZON = 0.38
_FOCAL = 0.7
_CAM_HEIGHT_M = 2.7
_EXAG = 1.35
_SUPERSAMPLE = 2
_NEAR_CAR_MAX_Z = 8.0  # an ego-lane vehicle this close is an obstacle (reason 3)
_ADJACENT_NEAR_MAX_Z = 11.0  # anything this close in a neighbouring lane blocks a lane change (15, 18)
_JPEG_QUALITY = 92

LineKind = Literal["edge", "dashed", "solid", "double_yellow"]
PedRole = Literal["crossing", "stepping_in", "curb", "sidewalk"]
Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in image-fraction units

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
_SKIES: dict[str, tuple[tuple[int, int, int], tuple[int, int, int]]] = {
    "day": ((70, 135, 215), (185, 215, 245)),
    "overcast": ((135, 145, 158), (200, 205, 212)),
    "dusk": ((55, 62, 120), (235, 160, 115)),
}
_WHITE = (242, 242, 236)
_YELLOW_LINE = (238, 192, 30)


@dataclass
class Vehicle:
    """A car, van or truck seen from behind; ``rel_lane`` counts lanes from the ego lane (left negative)."""

    rel_lane: int
    z: float  # distance ahead in the last frame (m)
    offset: float  # lateral offset from its lane centre in the last frame (m)
    v_rel: float  # speed relative to the ego car (m/s, positive = pulling away)
    v_lat: float  # lateral speed (m/s, positive = to the right)
    kind: Literal["car", "van", "truck"]
    color_name: str
    color: tuple[int, int, int]
    braking: bool = False
    signal: Literal["left", "right"] | None = None


@dataclass
class Pedestrian:
    """A person on foot; ``x`` is the lateral position in the last frame (m from the ego lane centre)."""

    x: float
    z: float
    v_x: float
    v_z: float
    role: PedRole
    clothes: tuple[int, int, int]
    skin: tuple[int, int, int]


@dataclass
class Rider:
    """A cyclist or motorcyclist seen from behind."""

    rel_lane: int
    z: float
    offset: float
    v_rel: float
    kind: Literal["bicycle", "motorcycle"]
    color: tuple[int, int, int]


@dataclass
class Obstacle:
    """Something in a lane that is neither a vehicle nor a person: cones, a barrier or a box."""

    rel_lane: int
    z: float
    kind: Literal["cones", "barrier", "box"]


@dataclass
class TrafficLight:
    """The light facing the ego car; an arrow is None (no arrow lamp), False (dark) or True (lit green)."""

    color: Literal["red", "yellow", "green"]
    left_arrow: bool | None
    right_arrow: bool | None
    x: float  # housing position, fraction of the image width / height
    y: float


@dataclass
class Scene:
    """Everything a clip shows; labels and description are functions of it."""

    num_lanes: int
    ego_lane: int  # 0 = leftmost
    lines: tuple[LineKind, ...]  # num_lanes + 1 boundaries, left to right
    left_turn_lane: bool = False
    right_turn_lane: bool = False
    light: TrafficLight | None = None
    stop_sign_z: float | None = None
    crosswalk_z: float | None = None
    vehicles: list[Vehicle] = field(default_factory=list)
    pedestrians: list[Pedestrian] = field(default_factory=list)
    riders: list[Rider] = field(default_factory=list)
    obstacles: list[Obstacle] = field(default_factory=list)
    ego_speed: float = 5.0
    sky: str = "day"
    road_gray: int = 85
    lateral_jitter: float = 0.0  # ego position inside its lane (m)
    scenery_seed: int = 0

    def boundary_x(self, j: int) -> float:
        """Lateral position (m, ego lane centre = 0) of lane boundary ``j`` (0 = left road edge)."""
        return (j - self.ego_lane - 0.5) * LANE_WIDTH_M - self.lateral_jitter

    def lane_center_x(self, rel_lane: int) -> float:
        return rel_lane * LANE_WIDTH_M - self.lateral_jitter

    def has_lane(self, rel_lane: int) -> bool:
        return 0 <= self.ego_lane + rel_lane < self.num_lanes

    def lead_vehicle(self) -> Vehicle | None:
        """The vehicle in the ego lane, if any (the generator places at most one)."""
        return next((v for v in self.vehicles if v.rel_lane == 0), None)


# ----------------------------------------------------------------------------------------------- labels


def _turn_reasons(scene: Scene, side: int) -> tuple[bool, list[int]]:
    """Whether turning/changing lanes to one side is possible and the reason bits for it (BDD-OIA 9-20)."""
    left = side < 0
    can_bits = (9, 10, 11) if left else (12, 13, 14)
    cannot_bits = (15, 16, 17) if left else (18, 19, 20)
    lead = scene.lead_vehicle()
    arrow = scene.light is not None and (scene.light.left_arrow if left else scene.light.right_arrow) is True
    can = [
        can_bits[0] if lead is not None and lead.v_lat * side > 0.5 else None,
        can_bits[1] if (scene.left_turn_lane if left else scene.right_turn_lane) else None,
        can_bits[2] if arrow else None,
    ]
    can_ids = [b for b in can if b is not None]
    if can_ids:
        return True, can_ids
    boundary = scene.lines[scene.ego_lane if left else scene.ego_lane + 1]
    blocked = any(v.rel_lane == side and v.z <= _ADJACENT_NEAR_MAX_Z for v in scene.vehicles)
    blocked |= any(r.rel_lane == side and r.z <= _ADJACENT_NEAR_MAX_Z for r in scene.riders)
    blocked |= any(o.rel_lane == side and o.z <= _ADJACENT_NEAR_MAX_Z for o in scene.obstacles)
    cannot = [
        cannot_bits[0] if blocked and scene.has_lane(side) else None,
        cannot_bits[1] if not scene.has_lane(side) else None,
        cannot_bits[2] if scene.has_lane(side) and boundary in ("solid", "double_yellow") else None,
    ]
    cannot_ids = [b for b in cannot if b is not None]
    return not cannot_ids, cannot_ids


def stop_causes(scene: Scene) -> list[int]:
    """Reason bits 3-8 that hold in the scene (each one means the car must stop or slow down)."""
    lead = scene.lead_vehicle()
    causes = [
        3 if lead is not None and (lead.z <= _NEAR_CAR_MAX_Z or lead.braking) else None,
        4 if any(p.role in ("crossing", "stepping_in") for p in scene.pedestrians) else None,
        5 if any(r.rel_lane == 0 for r in scene.riders) else None,
        6 if any(o.rel_lane == 0 for o in scene.obstacles) else None,
        7 if scene.light is not None and scene.light.color in ("red", "yellow") else None,
        8 if scene.stop_sign_z is not None else None,
    ]
    return [c for c in causes if c is not None]


def scene_labels(scene: Scene) -> tuple[list[int], list[int]]:
    """BDD-OIA action (4) and reason (21) bits of a scene.

    Stop (bit 1) when any of reasons 3-8 holds (a yellow light counts as reason 7, BDD-OIA's "traffic light"
    stop reason), otherwise move forward (bit 0) with reasons 0 (a vehicle ahead in the lane), 1 (none) and 2
    (green light). Turning to a side is possible when a permissive reason holds (front car turning that way,
    turn lane, lit arrow), else when no prohibiting reason (obstacle in that lane, no lane, solid line) holds;
    only the reasons on the winning side are set, as in BDD-OIA where 15-20 come with the action off.
    """
    actions = [0] * NUM_ACTIONS
    reasons = [0] * NUM_REASONS
    causes = stop_causes(scene)
    if causes:
        actions[1] = 1
        for bit in causes:
            reasons[bit] = 1
    else:
        actions[0] = 1
        reasons[0 if scene.lead_vehicle() is not None else 1] = 1
        if scene.light is not None and scene.light.color == "green":
            reasons[2] = 1
    for side, action_bit in ((-1, 2), (1, 3)):
        possible, bits = _turn_reasons(scene, side)
        actions[action_bit] = int(possible)
        for bit in bits:
            reasons[bit] = 1
    return actions, reasons


# --------------------------------------------------------------------------------------------- sampling


def _pick(rng: np.random.Generator, options: Sequence[Any], p: Sequence[float] | None = None) -> Any:
    return options[int(rng.choice(len(options), p=p))]


def _visible_min_z(x: float) -> float:
    """Smallest distance at which a point at lateral offset ``x`` stays inside the frame (4% margin)."""
    return abs(x) * _FOCAL / 0.44


def sample_scene(rng: np.random.Generator, *, motion: bool = True) -> Scene:
    """Draw a random scene. With ``motion=False`` (single-frame clips) no label depends on motion."""
    num_lanes = int(_pick(rng, (1, 2, 3), (0.12, 0.4, 0.48)))
    ego_lane = int(_pick(rng, range(num_lanes), (0.25, 0.5, 0.25) if num_lanes == 3 else None))
    inner: list[LineKind] = [
        _pick(rng, ("dashed", "solid", "double_yellow"), (0.62, 0.23, 0.15)) for _ in range(num_lanes - 1)
    ]
    lines: tuple[LineKind, ...] = ("edge", *inner, "edge")
    scene = Scene(
        num_lanes=num_lanes,
        ego_lane=ego_lane,
        lines=lines,
        ego_speed=float(rng.uniform(2.0, 8.0)),
        sky=_pick(rng, ("day", "overcast", "dusk"), (0.6, 0.25, 0.15)),
        road_gray=int(rng.integers(70, 105)),
        lateral_jitter=float(rng.uniform(-0.25, 0.25)),
        scenery_seed=int(rng.integers(2**31)),
    )
    if num_lanes >= 2 and ego_lane == 0:
        scene.left_turn_lane = bool(rng.random() < 0.2)
    if num_lanes >= 2 and ego_lane == num_lanes - 1:
        scene.right_turn_lane = bool(rng.random() < 0.2)

    if rng.random() < 0.5:
        color = _pick(rng, ("red", "yellow", "green"), (0.38, 0.06, 0.56))
        arrows = [True if rng.random() < p_lit else (False if rng.random() < 0.25 else None) for p_lit in (0.12, 0.12)]
        scene.light = TrafficLight(
            color=color,
            left_arrow=arrows[0],
            right_arrow=arrows[1],
            x=float(_pick(rng, (rng.uniform(0.12, 0.32), rng.uniform(0.55, 0.8)))),
            y=float(rng.uniform(0.03, 0.1)),
        )
    elif rng.random() < 0.1:
        scene.stop_sign_z = float(rng.uniform(9.0, 15.0))

    placed: list[Box] = []  # screen boxes of placed objects in the last frame

    # The ego lane holds at most one thing: a vehicle, a rider, or an obstacle (or nothing).
    ego_what = _pick(rng, ("vehicle", "rider", "obstacle", "none"), (0.56, 0.07, 0.06, 0.31))
    turn_left_ok = scene.has_lane(-1) and lines[ego_lane] == "dashed"
    turn_right_ok = scene.has_lane(1) and lines[ego_lane + 1] == "dashed"
    turning = 0
    if ego_what == "vehicle":
        kind, name, color = _vehicle_look(rng)
        near = rng.random() < 0.17
        braking = not near and rng.random() < 0.2
        if motion and not near and not braking and rng.random() < 0.45:
            turning = _pick(rng, [s for s, ok in ((-1, turn_left_ok), (1, turn_right_ok)) if ok] or [0])
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
        placed.append(_vehicle_box(scene, lead))
    elif ego_what == "rider":
        rider = Rider(
            0,
            float(rng.uniform(6.0, 11.0)),
            float(rng.uniform(-0.6, 0.6)),
            float(rng.uniform(-0.6, 0.6)),
            _pick(rng, ("bicycle", "motorcycle")),
            _pick(rng, _CLOTHES),
        )
        scene.riders.append(rider)
        placed.append(_rider_box(scene, rider))
    elif ego_what == "obstacle":
        obstacle = Obstacle(0, float(rng.uniform(6.0, 12.0)), _pick(rng, ("cones", "barrier", "box"), (0.5, 0.3, 0.2)))
        scene.obstacles.append(obstacle)
        placed.append(_obstacle_box(scene, obstacle))

    # Pedestrians: on a crosswalk in the ego lane, or at a curb stepping in / standing / walking away.
    roll = rng.random()
    if roll < 0.04:
        z = float(rng.uniform(7.0, 12.0))
        scene.crosswalk_z = z - 1.0
        _place_pedestrian(rng, scene, placed, "crossing", x=float(rng.uniform(-1.3, 1.3)), z=z)
    elif roll < 0.2:
        side = _pick(rng, (-1, 1))
        edge = scene.boundary_x(0 if side < 0 else num_lanes)
        x = edge + side * float(rng.uniform(-0.15, 0.5))
        stepping = motion and rng.random() < 0.5
        _place_pedestrian(rng, scene, placed, "stepping_in" if stepping else "curb", x=x, side=side)
    if rng.random() < 0.35:
        side = _pick(rng, (-1, 1))
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
            signal = _pick(rng, (None, "left", "right"), (0.8, 0.1, 0.1))
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
            _place_in_lane(rng, scene, placed, vehicle, near, _vehicle_box)
        elif roll < 0.58:
            rider = Rider(
                rel,
                0.0,
                float(rng.uniform(-0.5, 0.5)),
                float(rng.uniform(-1.0, 1.0)),
                _pick(rng, ("bicycle", "motorcycle")),
                _pick(rng, _CLOTHES),
            )
            _place_in_lane(rng, scene, placed, rider, near, _rider_box)
        elif roll < 0.64:
            obstacle = Obstacle(rel, 0.0, _pick(rng, ("cones", "barrier", "box"), (0.5, 0.3, 0.2)))
            _place_in_lane(rng, scene, placed, obstacle, near, _obstacle_box)
    # Far traffic two lanes away, purely scenery.
    for rel in (-2, 2):
        if scene.has_lane(rel) and rng.random() < 0.4:
            kind, name, color = _vehicle_look(rng)
            vehicle = Vehicle(rel, 0.0, 0.0, float(rng.uniform(-2.0, 2.0)), 0.0, kind, name, color)
            _place_in_lane(rng, scene, placed, vehicle, False, _vehicle_box)
    return scene


def _vehicle_look(rng: np.random.Generator) -> tuple[Literal["car", "van", "truck"], str, tuple[int, int, int]]:
    name, color = _pick(rng, _CAR_COLORS)
    return _pick(rng, ("car", "van", "truck"), (0.7, 0.2, 0.1)), name, color


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
    lo = max(_visible_min_z(x + math.copysign(1.3, x)), 6.0)
    for _ in range(8):
        if near:
            if lo > _ADJACENT_NEAR_MAX_Z - 0.5:
                return
            obj.z = float(rng.uniform(lo, _ADJACENT_NEAR_MAX_Z - 0.5))
        else:
            obj.z = float(rng.uniform(max(lo, _ADJACENT_NEAR_MAX_Z + 2.5), 24.0))
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
        v_x = speed * _pick(rng, (-1, 1))
    elif role == "stepping_in":
        v_x = -side * speed
    elif role == "curb":  # standing, walking away from the road, or along the curb
        v_x, v_z = _pick(rng, ((0.0, 0.0), (side * speed, 0.0), (0.0, speed * _pick(rng, (-1, 1)))))
    else:
        v_z = speed * _pick(rng, (-1, 1))
    ped = Pedestrian(x, 0.0, v_x, v_z, role, _pick(rng, _CLOTHES), _pick(rng, _SKIN))
    lo = max(_visible_min_z(x + math.copysign(0.6, x)), 7.0)
    for _ in range(8):
        ped.z = z if z is not None else float(rng.uniform(lo, max(lo + 5.0, 15.0)))
        box = _pedestrian_box(scene, ped)
        if not _overlaps(box, placed):
            placed.append(box)
            scene.pedestrians.append(ped)
            return
        if z is not None:
            break
    if role != "sidewalk":  # curb and road pedestrians must exist (alike, so placement reveals no role)
        placed.append(_pedestrian_box(scene, ped))
        scene.pedestrians.append(ped)
        scene.vehicles = [v for v in scene.vehicles if not _overlaps(_vehicle_box(scene, v), [placed[-1]])]
        scene.riders = [r for r in scene.riders if not _overlaps(_rider_box(scene, r), [placed[-1]])]
        scene.obstacles = [o for o in scene.obstacles if not _overlaps(_obstacle_box(scene, o), [placed[-1]])]


# ------------------------------------------------------------------------------------------- projection


@dataclass(frozen=True)
class _Camera:
    size: int  # canvas side (px), supersampled

    @property
    def horizon(self) -> float:
        return _HORIZON * self.size

    @property
    def focal(self) -> float:
        return _FOCAL * self.size

    def project(self, x: float, z: float) -> tuple[float, float]:
        """Canvas position of the ground point ``x`` m to the right and ``z`` m ahead."""
        return self.size / 2 + self.focal * x / z, self.horizon + self.focal * _CAM_HEIGHT_M / z

    def scale(self, z: float) -> float:
        """Canvas pixels per metre at distance ``z``."""
        return self.focal / z

    @property
    def z_bottom(self) -> float:
        return self.focal * _CAM_HEIGHT_M / (self.size - self.horizon)


_UNIT = _Camera(1)  # boxes in image-fraction units, for placement checks


def _vehicle_dims(kind: str) -> tuple[float, float]:
    return {"car": (1.9, 1.5), "van": (2.0, 2.0), "truck": (2.4, 2.8)}[kind]


def _box(x: float, z: float, width_m: float, height_m: float) -> Box:
    cx, cy = _UNIT.project(x, z)
    s = _UNIT.scale(z) * _EXAG
    return cx - width_m * s / 2, cy - height_m * s, cx + width_m * s / 2, cy


def _vehicle_box(scene: Scene, v: Vehicle) -> Box:
    w, h = _vehicle_dims(v.kind)
    return _box(scene.lane_center_x(v.rel_lane) + v.offset, v.z, w * 1.1, h)


def _rider_box(scene: Scene, r: Rider) -> Box:
    return _box(scene.lane_center_x(r.rel_lane) + r.offset, r.z, 0.9, 1.9)


def _obstacle_box(scene: Scene, o: Obstacle) -> Box:
    return _box(scene.lane_center_x(o.rel_lane), o.z, 2.6, 1.1)


def _pedestrian_box(scene: Scene, p: Pedestrian) -> Box:
    return _box(p.x, p.z, 0.9, 2.0)


# -------------------------------------------------------------------------------------------- rendering


def _shade(color: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    return tuple(max(0, min(255, int(c * factor))) for c in color)  # type: ignore[return-value]


def _background(scene: Scene, cam: _Camera) -> Image.Image:
    """Sky, distant scenery and the ground outside the road: identical in every frame of a clip."""
    size = cam.size
    top, bottom = _SKIES[scene.sky]
    horizon = int(cam.horizon)
    t = np.linspace(0.0, 1.0, horizon)[:, None]
    sky = (np.array(top)[None, :] * (1 - t) + np.array(bottom)[None, :] * t).astype(np.uint8)
    canvas = np.empty((size, size, 3), dtype=np.uint8)
    canvas[:horizon] = sky[:, None, :]
    grass = (72, 118, 58) if scene.sky != "dusk" else (52, 82, 48)
    canvas[horizon:] = grass
    img = Image.fromarray(canvas)
    draw = ImageDraw.Draw(img)
    rng = np.random.default_rng(scene.scenery_seed)
    dim = 0.75 if scene.sky == "dusk" else 1.0
    x = -rng.uniform(0, 0.05) * size
    while x < size:  # a skyline of buildings and trees standing on the horizon
        w = rng.uniform(0.05, 0.14) * size
        if rng.random() < 0.6:
            h = rng.uniform(0.04, 0.16) * size
            base = _shade(tuple(int(c) for c in rng.integers(95, 190, size=3)), dim)
            draw.rectangle((x, horizon - h, x + w, horizon), fill=base)
            for wy in np.arange(horizon - h + 0.02 * size, horizon - 0.01 * size, 0.035 * size):
                draw.line((x + 0.15 * w, wy, x + 0.85 * w, wy), fill=_shade(base, 0.75), width=max(1, size // 128))
        else:
            h = rng.uniform(0.04, 0.09) * size
            draw.ellipse((x, horizon - h, x + w, horizon + 0.01 * size), fill=_shade((50, 105, 45), dim))
        x += w + rng.uniform(0.0, 0.03) * size
    sidewalk = _shade((168, 164, 154), dim)
    near, far = cam.z_bottom * 0.8, 400.0
    for xa, xb in (
        (scene.boundary_x(0) - 3.0, scene.boundary_x(0)),
        (scene.boundary_x(scene.num_lanes), scene.boundary_x(scene.num_lanes) + 3.0),
    ):
        draw.polygon(
            [cam.project(xa, near), cam.project(xb, near), cam.project(xb, far), cam.project(xa, far)], fill=sidewalk
        )
    road = (scene.road_gray, scene.road_gray, scene.road_gray + 4)
    xl, xr = scene.boundary_x(0), scene.boundary_x(scene.num_lanes)
    draw.polygon([cam.project(xl, near), cam.project(xr, near), cam.project(xr, far), cam.project(xl, far)], fill=road)
    return img


def _ground_quad(draw: ImageDraw.ImageDraw, cam: _Camera, x0: float, x1: float, z0: float, z1: float, fill) -> None:
    near = max(z0, cam.z_bottom * 0.5)
    if z1 <= near:
        return
    draw.polygon([cam.project(x0, near), cam.project(x1, near), cam.project(x1, z1), cam.project(x0, z1)], fill=fill)


def _draw_markings(draw: ImageDraw.ImageDraw, scene: Scene, cam: _Camera, travelled: float) -> None:
    """Lane lines, crosswalk and turn arrows; world-fixed, so they slide towards the camera as the car moves."""
    far = 120.0
    for j, kind in enumerate(scene.lines):
        x = scene.boundary_x(j)
        if kind == "edge":
            _ground_quad(draw, cam, x - 0.1, x + 0.1, 0.0, far, _WHITE)
        elif kind == "solid":
            _ground_quad(draw, cam, x - 0.11, x + 0.11, 0.0, far, _WHITE)
        elif kind == "double_yellow":
            _ground_quad(draw, cam, x - 0.3, x - 0.08, 0.0, far, _YELLOW_LINE)
            _ground_quad(draw, cam, x + 0.08, x + 0.3, 0.0, far, _YELLOW_LINE)
        else:
            period, length = 9.0, 3.5
            z = -(travelled % period)
            while z < far:
                _ground_quad(draw, cam, x - 0.12, x + 0.12, z, z + length, _WHITE)
                z += period
    if scene.crosswalk_z is not None:
        zc = scene.crosswalk_z - travelled
        x, x_end = scene.boundary_x(0), scene.boundary_x(scene.num_lanes)
        while x < x_end:
            _ground_quad(draw, cam, x + 0.1, x + 0.55, zc, zc + 2.5, _WHITE)
            x += 0.9
    for side, on in ((-1, scene.left_turn_lane), (1, scene.right_turn_lane)):
        if not on:
            continue
        for z0 in (5.0, 16.0):
            z = z0 - travelled
            cx = -scene.lateral_jitter
            shaft = [
                (cx - side * 0.1 - 0.2, z),
                (cx - side * 0.1 + 0.2, z),
                (cx - side * 0.1 + 0.2, z + 3.0),
                (cx - side * 0.1 - 0.2, z + 3.0),
            ]
            arm = [
                (cx - side * 0.3, z + 2.6),
                (cx + side * 0.7, z + 2.6),
                (cx + side * 0.7, z + 3.6),
                (cx - side * 0.3, z + 3.6),
            ]
            head = [(cx + side * 0.7, z + 1.8), (cx + side * 1.45, z + 3.1), (cx + side * 0.7, z + 4.4)]
            for poly in (shaft, arm, head):
                if min(p[1] for p in poly) > cam.z_bottom * 0.5:
                    draw.polygon([cam.project(px, pz) for px, pz in poly], fill=_WHITE)


def _draw_vehicle(draw: ImageDraw.ImageDraw, cam: _Camera, x: float, z: float, v: Vehicle, frame: int) -> None:
    bx, by = cam.project(x, z)
    s = cam.scale(z) * _EXAG
    wm, hm = _vehicle_dims(v.kind)
    w, h = wm * s, hm * s
    draw.ellipse((bx - 0.58 * w, by - 0.07 * h, bx + 0.58 * w, by + 0.05 * h), fill=(25, 25, 28))
    for sx in (-1, 1):
        draw.rectangle(_ordered(bx + sx * 0.47 * w, by - 0.17 * h, bx + sx * 0.3 * w, by), fill=(18, 18, 18))
    body = v.color
    if v.kind == "truck":
        draw.rectangle((bx - 0.5 * w, by - h, bx + 0.5 * w, by - 0.12 * h), fill=body)
        draw.rectangle((bx - 0.46 * w, by - 0.95 * h, bx + 0.46 * w, by - 0.3 * h), fill=_shade(body, 0.85))
        draw.line((bx, by - 0.95 * h, bx, by - 0.3 * h), fill=_shade(body, 0.6), width=max(1, int(0.03 * w)))
        lamp_top, lamp_bottom = 0.26, 0.14
    else:
        lower = 0.62 if v.kind == "car" else 0.5
        draw.rectangle((bx - 0.5 * w, by - lower * h, bx + 0.5 * w, by - 0.12 * h), fill=body)
        draw.rectangle((bx - 0.42 * w, by - h, bx + 0.42 * w, by - lower * h), fill=body)
        draw.rectangle((bx - 0.35 * w, by - 0.95 * h, bx + 0.35 * w, by - (lower + 0.04) * h), fill=(45, 55, 68))
        lamp_top, lamp_bottom = lower - 0.05, lower - 0.25
    draw.rectangle((bx - 0.1 * w, by - 0.32 * h, bx + 0.1 * w, by - 0.2 * h), fill=(228, 228, 215))
    lamp = (255, 28, 28) if v.braking else (120, 22, 24)
    for sx in (-1, 1):
        box = _ordered(bx + sx * 0.48 * w, by - lamp_top * h, bx + sx * 0.26 * w, by - lamp_bottom * h)
        if v.braking:
            cx, cy, r = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2, 0.2 * w
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(255, 70, 70, 110))
        draw.rectangle(box, fill=lamp)
    if v.braking:
        draw.rectangle((bx - 0.12 * w, by - 0.99 * h, bx + 0.12 * w, by - 0.93 * h), fill=(255, 28, 28))
    if v.signal is not None and frame % 2 == 0:
        sx = -1 if v.signal == "left" else 1
        box = _ordered(bx + sx * 0.5 * w, by - lamp_bottom * h, bx + sx * 0.36 * w, by - (lamp_bottom - 0.1) * h)
        draw.rectangle(box, fill=(255, 170, 0))


def _draw_pedestrian(draw: ImageDraw.ImageDraw, cam: _Camera, x: float, z: float, p: Pedestrian, frame: int) -> None:
    bx, by = cam.project(x, z)
    h = 1.9 * cam.scale(z) * _EXAG
    lw = max(1, int(0.07 * h))
    moving = p.v_x != 0 or p.v_z != 0
    stride = 0.12 * h if moving and frame % 2 else 0.04 * h
    for sx in (-1, 1):
        draw.line((bx + sx * 0.05 * h, by - 0.47 * h, bx + sx * stride, by), fill=(40, 40, 60), width=lw)
    draw.rectangle((bx - 0.14 * h, by - 0.8 * h, bx + 0.14 * h, by - 0.45 * h), fill=p.clothes)
    for sx in (-1, 1):
        draw.line((bx + sx * 0.14 * h, by - 0.78 * h, bx + sx * 0.2 * h, by - 0.5 * h), fill=p.clothes, width=lw)
    r = 0.1 * h
    draw.ellipse((bx - r, by - 0.8 * h - 2 * r, bx + r, by - 0.8 * h), fill=p.skin)


def _draw_rider(draw: ImageDraw.ImageDraw, cam: _Camera, x: float, z: float, r: Rider) -> None:
    bx, by = cam.project(x, z)
    h = 1.8 * cam.scale(z) * _EXAG
    lw = max(1, int(0.06 * h))
    if r.kind == "motorcycle":
        draw.rectangle((bx - 0.06 * h, by - 0.3 * h, bx + 0.06 * h, by), fill=(20, 20, 20))
        draw.rectangle((bx - 0.16 * h, by - 0.55 * h, bx + 0.16 * h, by - 0.28 * h), fill=(50, 50, 55))
        draw.rectangle((bx - 0.06 * h, by - 0.42 * h, bx + 0.06 * h, by - 0.34 * h), fill=(200, 25, 25))
    else:
        draw.ellipse((bx - 0.035 * h, by - 0.38 * h, bx + 0.035 * h, by), fill=(15, 15, 15))
        draw.line((bx, by - 0.38 * h, bx, by - 0.55 * h), fill=(90, 90, 90), width=lw)
    draw.line((bx - 0.22 * h, by - 0.62 * h, bx + 0.22 * h, by - 0.62 * h), fill=(30, 30, 30), width=lw)
    draw.rectangle((bx - 0.13 * h, by - 0.9 * h, bx + 0.13 * h, by - 0.55 * h), fill=r.color)
    for sx in (-1, 1):
        draw.line((bx + sx * 0.13 * h, by - 0.85 * h, bx + sx * 0.22 * h, by - 0.62 * h), fill=r.color, width=lw)
    rad = 0.1 * h
    draw.ellipse((bx - rad, by - 0.9 * h - 2 * rad, bx + rad, by - 0.9 * h + 0.02 * h), fill=(250, 250, 250))


def _draw_obstacle(draw: ImageDraw.ImageDraw, cam: _Camera, x: float, z: float, o: Obstacle) -> None:
    s = cam.scale(z) * _EXAG
    if o.kind == "cones":
        for dx in (-0.9, 0.0, 0.9):
            bx, by = cam.project(x + dx, z)
            h, w = 0.9 * s, 0.5 * s
            draw.polygon([(bx - w / 2, by), (bx + w / 2, by), (bx, by - h)], fill=(255, 115, 0))
            draw.rectangle((bx - 0.22 * w, by - 0.6 * h, bx + 0.22 * w, by - 0.45 * h), fill=(250, 250, 250))
            draw.rectangle((bx - 0.6 * w, by - 0.08 * h, bx + 0.6 * w, by), fill=(255, 115, 0))
    elif o.kind == "barrier":
        bx, by = cam.project(x, z)
        w, h = 2.6 * s, 1.0 * s
        for sx in (-0.4, 0.4):
            draw.rectangle((bx + sx * w - 0.04 * w, by - h, bx + sx * w + 0.04 * w, by), fill=(200, 200, 200))
        stripes = 6
        for k in range(stripes):
            fill = (255, 110, 0) if k % 2 == 0 else (250, 250, 250)
            x0 = bx - w / 2 + k * w / stripes
            draw.rectangle((x0, by - h, x0 + w / stripes, by - 0.55 * h), fill=fill)
    else:
        bx, by = cam.project(x, z)
        w = 0.9 * s
        draw.rectangle((bx - w / 2, by - 0.8 * w, bx + w / 2, by), fill=(150, 105, 60))
        draw.line(
            (bx - w / 2, by - 0.55 * w, bx + w / 2, by - 0.55 * w), fill=(110, 75, 40), width=max(1, int(0.06 * w))
        )


def _draw_stop_sign(draw: ImageDraw.ImageDraw, cam: _Camera, scene: Scene, z: float) -> None:
    x = scene.boundary_x(scene.num_lanes) + 1.2
    z = max(z, _visible_min_z(x + 0.8))
    bx, by = cam.project(x, z)
    s = cam.scale(z)
    r = max(1.1 * s, 0.05 * cam.size)
    top = by - max(3.2 * s, 3 * r)
    draw.line((bx, by, bx, top), fill=(120, 120, 125), width=max(1, int(0.15 * s)))
    octagon = [
        (bx + r * math.cos(math.pi / 8 + k * math.pi / 4), top + r * math.sin(math.pi / 8 + k * math.pi / 4))
        for k in range(8)
    ]
    draw.polygon(octagon, fill=(250, 250, 250))
    inner = [(bx + 0.85 * (px - bx), top + 0.85 * (py - top)) for px, py in octagon]
    draw.polygon(inner, fill=(210, 18, 28))
    draw.rectangle((bx - 0.55 * r, top - 0.08 * r, bx + 0.55 * r, top + 0.08 * r), fill=(250, 250, 250))


def _draw_traffic_light(draw: ImageDraw.ImageDraw, cam: _Camera, light: TrafficLight, approach: float) -> None:
    """A big overhead signal; ``approach`` > 1 enlarges it slightly and pushes it outwards (the car nears it)."""
    size = cam.size
    vx, vy = size / 2, cam.horizon
    tw, th = 0.09 * size * approach, 0.23 * size * approach
    lx = vx + (light.x * size - vx) * approach
    ly = vy + (light.y * size - vy) * approach
    arm_side = -1 if light.x < 0.5 else 1
    draw.line(
        (lx + tw / 2, ly + 0.1 * th, size / 2 + arm_side * size, ly + 0.1 * th),
        fill=(70, 70, 74),
        width=max(1, int(0.12 * tw)),
    )
    draw.rectangle((lx, ly, lx + tw, ly + th), fill=(24, 24, 26))
    r = 0.34 * tw
    lamps = (
        ("red", (255, 30, 30), (70, 22, 22)),
        ("yellow", (255, 205, 0), (70, 58, 18)),
        ("green", (30, 255, 90), (18, 62, 30)),
    )
    for k, (name, on, off) in enumerate(lamps):
        cx, cy = lx + tw / 2, ly + th * (k + 0.5) / 3
        if name == light.color:
            g = 1.7 * r
            draw.ellipse((cx - g, cy - g, cx + g, cy + g), fill=(*on, 90))
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=on if name == light.color else off)
    for sx, arrow in ((-1, light.left_arrow), (1, light.right_arrow)):
        if arrow is None:
            continue
        ax0 = lx - tw * 1.05 if sx < 0 else lx + tw * 1.05
        ay0 = ly + th * 2 / 3
        draw.rectangle((ax0, ay0, ax0 + tw, ay0 + th / 3), fill=(24, 24, 26))
        color = (30, 255, 90) if arrow else (18, 62, 30)
        cx, cy, a = ax0 + tw / 2, ay0 + th / 6, 0.36 * tw
        draw.rectangle(
            (cx - sx * 0.05 * a - a * 0.55, cy - 0.18 * a, cx - sx * 0.05 * a + a * 0.55, cy + 0.18 * a), fill=color
        )
        draw.polygon(
            [(cx + sx * a, cy), (cx + sx * 0.2 * a, cy - 0.6 * a), (cx + sx * 0.2 * a, cy + 0.6 * a)], fill=color
        )


def _ordered(x0: float, y0: float, x1: float, y1: float) -> tuple[float, float, float, float]:
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


def render_clip(scene: Scene, *, num_frames: int = 4, image_size: int = 128) -> list[Image.Image]:
    """The clip's frames, oldest first, each ``image_size`` square; the last frame is the annotated one."""
    if num_frames < 1 or image_size < 16:
        raise ValueError(f"num_frames must be >= 1 and image_size >= 16, got {num_frames} and {image_size}")
    cam = _Camera(image_size * _SUPERSAMPLE)
    background = _background(scene, cam)
    frames = []
    for i in range(num_frames):
        t = -(num_frames - 1 - i) * FRAME_INTERVAL_S  # seconds before the annotated frame
        travelled = scene.ego_speed * t  # ego position along the road relative to the last frame (<= 0)
        img = background.copy()
        draw = ImageDraw.Draw(img, "RGBA")
        _draw_markings(draw, scene, cam, travelled)
        items: list[tuple[float, object, float]] = []
        for v in scene.vehicles:
            items.append((v.z + v.v_rel * t, v, scene.lane_center_x(v.rel_lane) + v.offset + v.v_lat * t))
        for r in scene.riders:
            items.append((r.z + r.v_rel * t, r, scene.lane_center_x(r.rel_lane) + r.offset))
        for o in scene.obstacles:
            items.append((o.z - travelled, o, scene.lane_center_x(o.rel_lane)))
        for p in scene.pedestrians:
            items.append((p.z - travelled + p.v_z * t, p, p.x + p.v_x * t))
        if scene.stop_sign_z is not None:
            items.append((scene.stop_sign_z - travelled, "stop_sign", 0.0))
        for z, obj, x in sorted(items, key=lambda item: -item[0]):
            z = max(z, 2.0)
            if isinstance(obj, Vehicle):
                _draw_vehicle(draw, cam, x, z, obj, i)
            elif isinstance(obj, Rider):
                _draw_rider(draw, cam, x, z, obj)
            elif isinstance(obj, Obstacle):
                _draw_obstacle(draw, cam, x, z, obj)
            elif isinstance(obj, Pedestrian):
                _draw_pedestrian(draw, cam, x, z, obj, i)
            else:
                _draw_stop_sign(draw, cam, scene, z)
        if scene.light is not None:
            _draw_traffic_light(draw, cam, scene.light, 1.0 - 0.03 * (num_frames - 1 - i))
        frames.append(img.reduce(_SUPERSAMPLE))  # box-filter the 2x canvas down: cheap anti-aliasing
    return frames


# ------------------------------------------------------------------------------------------ description

_LANE_POS = {1: ("only",), 2: ("left", "right"), 3: ("left", "middle", "right")}
_NUMBER = {1: "one", 2: "two", 3: "three"}
_MAX_WORDS = 38


def describe_scene(scene: Scene, rng: np.random.Generator) -> str:
    """One or two short sentences about the scene, worded at random but always true to it (< 40 words)."""
    n = scene.num_lanes
    if n == 1:
        road = _pick(rng, ("A single-lane road", "Driving on a narrow one-lane road", "A one-lane street"))
    else:
        pos = _LANE_POS[n][scene.ego_lane]
        lane = (
            "left-turn lane" if scene.left_turn_lane else "right-turn lane" if scene.right_turn_lane else f"{pos} lane"
        )
        road = _pick(
            rng,
            (
                f"Driving in the {lane} of a {_NUMBER[n]}-lane road",
                f"The car is in the {lane} of a {_NUMBER[n]}-lane street",
                f"A {_NUMBER[n]}-lane road, with the car in the {lane}",
            ),
        )
    if scene.sky == "dusk":
        road += _pick(rng, (" at dusk", " in the evening"))
    elif scene.sky == "overcast":
        road += _pick(rng, (" under a gray sky", " on a cloudy day"))

    clauses: list[str] = []
    if scene.light is not None:
        light = scene.light
        text = _pick(
            rng,
            (
                f"the traffic light is {light.color}",
                f"a {light.color} light is ahead",
                f"the signal shows {light.color}",
            ),
        )
        arrows = [side for side, lit in (("left", light.left_arrow), ("right", light.right_arrow)) if lit]
        if arrows:
            text += f" with a green {' and '.join(arrows)} arrow" + ("s" if len(arrows) > 1 else "")
        clauses.append(text)
    if scene.stop_sign_z is not None:
        clauses.append(_pick(rng, ("a stop sign stands on the right", "there is a stop sign ahead")))
    for p in scene.pedestrians:
        if p.role == "crossing":
            clauses.append(
                _pick(rng, ("a pedestrian is crossing in front", "someone walks across the crosswalk ahead"))
            )
        elif p.role == "stepping_in":
            clauses.append(
                _pick(rng, ("a pedestrian steps off the curb into the road", "a person walks into the road"))
            )
        elif p.role == "curb" and p.v_x == 0 and p.v_z == 0:
            clauses.append(_pick(rng, ("a pedestrian waits at the curb", "a person stands by the road")))
        elif p.role == "curb":
            clauses.append(_pick(rng, ("a pedestrian walks on the sidewalk", "a person walks by the road")))
    lead = scene.lead_vehicle()
    if lead is not None:
        what = f"{lead.color_name} {lead.kind}"
        if lead.v_lat < -0.5 or lead.v_lat > 0.5:
            side = "left" if lead.v_lat < 0 else "right"
            clauses.append(_pick(rng, (f"the {what} ahead is turning {side}", f"a {what} ahead moves to the {side}")))
        elif lead.z <= _NEAR_CAR_MAX_Z:
            clauses.append(_pick(rng, (f"a {what} is close ahead", f"a {what} is just in front")))
        elif lead.braking:
            clauses.append(_pick(rng, (f"the {what} ahead is braking", f"a {what} ahead has its brake lights on")))
        else:
            clauses.append(
                _pick(rng, (f"a {what} drives ahead", f"the car follows a {what}", f"a {what} is ahead in the lane"))
            )
    for r in scene.riders:
        who = "cyclist" if r.kind == "bicycle" else "motorcyclist"
        if r.rel_lane == 0:
            clauses.append(_pick(rng, (f"a {who} rides ahead in the lane", f"a {who} is in front")))
    for o in scene.obstacles:
        if o.rel_lane == 0:
            what = {"cones": "traffic cones block", "barrier": "a barrier blocks", "box": "a box lies in"}[o.kind]
            clauses.append(f"{what} the lane")
    for side, name in ((-1, "left"), (1, "right")):
        near = [v for v in scene.vehicles if v.rel_lane == side and v.z <= _ADJACENT_NEAR_MAX_Z]
        if near:
            clauses.append(
                _pick(
                    rng,
                    (
                        f"a {near[0].color_name} {near[0].kind} is in the {name} lane",
                        f"a {near[0].kind} is beside on the {name}",
                    ),
                )
            )
        for r in scene.riders:
            if r.rel_lane == side and r.z <= _ADJACENT_NEAR_MAX_Z:
                clauses.append(f"a {'cyclist' if r.kind == 'bicycle' else 'motorcyclist'} rides in the {name} lane")
        for o in scene.obstacles:
            if o.rel_lane == side and o.z <= _ADJACENT_NEAR_MAX_Z:
                what = {"cones": "traffic cones stand", "barrier": "a barrier stands", "box": "a box lies"}[o.kind]
                clauses.append(f"{what} in the {name} lane")
    if not clauses:
        clauses.append(_pick(rng, ("the road ahead is clear", "nothing is ahead", "the lane ahead is empty")))
    budget = _MAX_WORDS - len(road.split())
    kept: list[str] = []
    for clause in clauses:  # most important first: stop causes, then turning cues, then neighbours
        if len(kept) < 3 and sum(len(c.split()) + 1 for c in (*kept, clause)) <= budget:
            kept.append(clause)
    sentence = kept[0] if len(kept) == 1 else ", ".join(kept[:-1]) + " and " + kept[-1]
    text = f"{road}. {sentence[0].upper()}{sentence[1:]}"
    lines = []
    for side, idx in (("left", scene.ego_lane), ("right", scene.ego_lane + 1)):
        kind = scene.lines[idx]
        if kind in ("solid", "double_yellow"):
            lines.append(f"a {'double yellow' if kind == 'double_yellow' else 'solid'} line on the {side}")
        elif kind == "dashed":
            lines.append(f"a dashed line on the {side}")
    lane_text = f", {' and '.join(lines)}"
    if lines and len(text.split()) + len(lane_text.split()) <= _MAX_WORDS:
        text += lane_text
    return text + "."


# ------------------------------------------------------------------------------------------- generation


@dataclass(frozen=True)
class SyntheticClip:
    """One generated clip: frames (oldest first), label bits, description and the scene it came from."""

    clip_id: str
    frames: list[Image.Image]
    actions: list[int]
    reasons: list[int]
    description: str
    scene: Scene


def make_clip(seed: int, split: str, index: int, *, num_frames: int = 4, image_size: int = 128) -> SyntheticClip:
    """The clip at ``index`` of ``split`` for ``seed``: each (seed, split, index) has its own random stream."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    rng = np.random.default_rng([seed, SPLITS.index(split), index])
    scene = sample_scene(rng, motion=num_frames > 1)
    actions, reasons = scene_labels(scene)
    frames = render_clip(scene, num_frames=num_frames, image_size=image_size)
    return SyntheticClip(f"synth_{split}_{index:06d}", frames, actions, reasons, describe_scene(scene, rng), scene)


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=_JPEG_QUALITY)
    return buf.getvalue()


def _write_split(out: Path, split: str, count: int, seed: int, num_frames: int, image_size: int) -> dict:
    images, annotations, reasons_rows, descriptions = [], [], [], {}
    action_counts, reason_counts = [0] * NUM_ACTIONS, [0] * NUM_REASONS
    for index in range(count):
        clip = make_clip(seed, split, index, num_frames=num_frames, image_size=image_size)
        frame_dir = out / "frames" / clip.clip_id
        frame_dir.mkdir(parents=True, exist_ok=True)
        data = b""
        for i, frame in enumerate(clip.frames):
            data = _jpeg(frame)
            (frame_dir / f"{i}.jpg").write_bytes(data)
        file_name = f"{clip.clip_id}.jpg"
        (out / "data" / file_name).write_bytes(data)
        images.append({"id": index, "file_name": file_name, "width": image_size, "height": image_size})
        annotations.append({"id": index, "category": clip.actions})
        reasons_rows.append({"file_name": file_name, "reason": clip.reasons})
        descriptions[clip.clip_id] = clip.description
        action_counts = [a + b for a, b in zip(action_counts, clip.actions, strict=True)]
        reason_counts = [a + b for a, b in zip(reason_counts, clip.reasons, strict=True)]
    (out / f"{split}_25k_images_actions.json").write_text(json.dumps({"images": images, "annotations": annotations}))
    (out / f"{split}_25k_images_reasons.json").write_text(json.dumps(reasons_rows))
    (out / f"{split}_descriptions.json").write_text(json.dumps(descriptions, indent=0, ensure_ascii=False))
    return {"clips": count, "action_counts": action_counts, "reason_counts": reason_counts}


def generate_synthetic(
    out_dir: str | Path,
    *,
    train: int,
    val: int,
    test: int,
    seed: int = 0,
    num_frames: int = 4,
    image_size: int = 128,
    overwrite: bool = False,
) -> Path:
    """Write synthetic clips in BDD-OIA's layout (plus ``frames/`` and ``{split}_descriptions.json``).

    Layout: ``data/<clip>.jpg`` (the last frame), ``frames/<clip>/<i>.jpg`` (oldest first),
    ``{split}_25k_images_{actions,reasons}.json`` and ``synthetic_info.json`` (settings, per-bit counts).
    Splits draw from distinct random streams, so no clip is shared between them. An existing output folder
    is only replaced with ``overwrite=True`` and only if it holds an earlier synthetic set.
    """
    counts = {"train": train, "val": val, "test": test}
    for name, n in counts.items():
        if n < 0:
            raise ValueError(f"{name} must be >= 0, got {n}")
    if num_frames < 1 or image_size < 16:
        raise ValueError(f"num_frames must be >= 1 and image_size >= 16, got {num_frames} and {image_size}")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        if not (out / INFO_FILE).is_file():
            raise FileExistsError(
                f"{out} is not empty and holds no {INFO_FILE}: refusing to write a synthetic set there"
            )
        if not overwrite:
            raise FileExistsError(
                f"{out} already holds a synthetic set; pass overwrite=True (--overwrite) to replace it"
            )
        for sub in ("data", "frames"):
            shutil.rmtree(out / sub, ignore_errors=True)
        for path in out.glob("*_25k_images_*.json"):
            path.unlink()
        for path in out.glob("*_descriptions.json"):
            path.unlink()
    (out / "data").mkdir(parents=True, exist_ok=True)
    (out / "frames").mkdir(exist_ok=True)
    start = time.perf_counter()
    stats = {split: _write_split(out, split, n, seed, num_frames, image_size) for split, n in counts.items()}
    info = {
        "generator": "vlmrl_trl.data.synthetic",
        "seed": seed,
        "num_frames": num_frames,
        "image_size": image_size,
        "frame_interval_s": FRAME_INTERVAL_S,
        "seconds": round(time.perf_counter() - start, 2),
        "splits": stats,
    }
    (out / INFO_FILE).write_text(json.dumps(info, indent=2))
    return out
