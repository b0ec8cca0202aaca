"""What a synthetic clip shows: the road, its objects and the world scale they are drawn at."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

FRAME_INTERVAL_S = 0.5  # time between consecutive frames of a clip
LANE_WIDTH_M = 3.5
NEAR_CAR_MAX_Z = 8.0  # an ego-lane vehicle this close is an obstacle (reason 3)
ADJACENT_NEAR_MAX_Z = 11.0  # anything this close in a neighbouring lane blocks a lane change (15, 18)

LineKind = Literal["edge", "dashed", "solid", "double_yellow"]
PedRole = Literal["crossing", "stepping_in", "curb", "sidewalk"]
ScaleName = Literal["near", "far"]


@dataclass(frozen=True)
class WorldScale:
    """How large the decision cues are drawn; the scene content and its labels do not depend on it."""

    name: ScaleName
    exag: float  # vehicles, people, riders and obstacles drawn this many times their real size
    people: float  # pedestrians and riders drawn this many times larger again
    light_size: tuple[float, float]  # traffic-light housing, fraction of the frame width and height
    sign_radius: float  # smallest stop-sign radius, fraction of the frame width
    light_x: tuple[float, float] | None  # housing's left edge range (fraction); None: as sampled (0.12-0.8)


SCALES: dict[str, WorldScale] = {
    # Near field: a traffic light, stop sign, pedestrian or rider spans several 32x32 px tokens of a 128 px frame.
    "near": WorldScale("near", exag=2.7, people=1.4, light_size=(0.17, 0.42), sign_radius=0.12, light_x=(0.2, 0.62)),
    # Far field (the first world): the cues mostly fit in one token; the harder test, for pretrained models.
    "far": WorldScale("far", exag=1.35, people=1.0, light_size=(0.09, 0.23), sign_radius=0.05, light_x=None),
}
DEFAULT_SCALE: ScaleName = "near"


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
    scale: ScaleName = DEFAULT_SCALE  # how it is drawn (see SCALES)

    def boundary_x(self, j: int) -> float:
        """Lateral position (m, ego lane centre = 0) of lane boundary ``j`` (0 = left road edge)."""
        return (j - self.ego_lane - 0.5) * LANE_WIDTH_M - self.lateral_jitter

    def lane_center_x(self, rel_lane: int) -> float:
        return rel_lane * LANE_WIDTH_M - self.lateral_jitter

    def has_lane(self, rel_lane: int) -> bool:
        return 0 <= self.ego_lane + rel_lane < self.num_lanes

    @property
    def world(self) -> WorldScale:
        return SCALES[self.scale]

    def lead_vehicle(self) -> Vehicle | None:
        """The vehicle in the ego lane, if any (the generator places at most one)."""
        return next((v for v in self.vehicles if v.rel_lane == 0), None)
