"""Perspective geometry shared by placement and drawing: projection, visibility and object boxes."""

from __future__ import annotations

from dataclasses import dataclass

from .scene import Obstacle, Pedestrian, Rider, Scene, Vehicle

# Camera: horizon at 38% of the height, focal length 0.7 times the width, a high camera so that the ego lane
# spans 80% of the bottom row. Objects are drawn ``WorldScale.exag`` times their real size.
_HORIZON = 0.38
_FOCAL = 0.7
_CAM_HEIGHT_M = 2.7

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in image-fraction units


def visible_min_z(x: float) -> float:
    """Smallest distance at which a point at lateral offset ``x`` stays inside the frame (4% margin)."""
    return abs(x) * _FOCAL / 0.44


@dataclass(frozen=True)
class Camera:
    """The dashcam's perspective projection onto a ``size`` px canvas; objects x ``exag``, people x ``people`` more."""

    size: int  # canvas side (px), supersampled
    exag: float = 1.0
    people: float = 1.0

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


def vehicle_dims(kind: str) -> tuple[float, float]:
    return {"car": (1.9, 1.5), "van": (2.0, 2.0), "truck": (2.4, 2.8)}[kind]


def _box(scene: Scene, x: float, z: float, width_m: float, height_m: float, person: bool = False) -> Box:
    unit = Camera(1, scene.world.exag, scene.world.people)  # image-fraction units, for placement checks
    cx, cy = unit.project(x, z)
    s = unit.scale(z) * unit.exag * (unit.people if person else 1.0)
    return cx - width_m * s / 2, cy - height_m * s, cx + width_m * s / 2, cy


def vehicle_box(scene: Scene, v: Vehicle) -> Box:
    w, h = vehicle_dims(v.kind)
    return _box(scene, scene.lane_center_x(v.rel_lane) + v.offset, v.z, w * 1.1, h)


def rider_box(scene: Scene, r: Rider) -> Box:
    return _box(scene, scene.lane_center_x(r.rel_lane) + r.offset, r.z, 0.9, 1.9, person=True)


def obstacle_box(scene: Scene, o: Obstacle) -> Box:
    return _box(scene, scene.lane_center_x(o.rel_lane), o.z, 2.6, 1.1)


def pedestrian_box(scene: Scene, p: Pedestrian) -> Box:
    return _box(scene, p.x, p.z, 0.9, 2.0, person=True)
