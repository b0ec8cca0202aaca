"""Drawing a scene into frames: background, lane markings, objects and signals, supersampled."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from .camera import Camera, vehicle_dims, visible_min_z
from .scene import FRAME_INTERVAL_S, Obstacle, Pedestrian, Rider, Scene, TrafficLight, Vehicle, WorldScale

_SUPERSAMPLE = 2
_SKIES: dict[str, tuple[tuple[int, int, int], tuple[int, int, int]]] = {
    "day": ((70, 135, 215), (185, 215, 245)),
    "overcast": ((135, 145, 158), (200, 205, 212)),
    "dusk": ((55, 62, 120), (235, 160, 115)),
}
_WHITE = (242, 242, 236)
_YELLOW_LINE = (238, 192, 30)


def _shade(color: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    return tuple(max(0, min(255, int(c * factor))) for c in color)  # type: ignore[return-value]


def _background(scene: Scene, cam: Camera) -> Image.Image:
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


def _ground_quad(draw: ImageDraw.ImageDraw, cam: Camera, x0: float, x1: float, z0: float, z1: float, fill) -> None:
    near = max(z0, cam.z_bottom * 0.5)
    if z1 <= near:
        return
    draw.polygon([cam.project(x0, near), cam.project(x1, near), cam.project(x1, z1), cam.project(x0, z1)], fill=fill)


def _draw_markings(draw: ImageDraw.ImageDraw, scene: Scene, cam: Camera, travelled: float) -> None:
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


def _draw_vehicle(draw: ImageDraw.ImageDraw, cam: Camera, x: float, z: float, v: Vehicle, frame: int) -> None:
    bx, by = cam.project(x, z)
    s = cam.scale(z) * cam.exag
    wm, hm = vehicle_dims(v.kind)
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


def _draw_pedestrian(draw: ImageDraw.ImageDraw, cam: Camera, x: float, z: float, p: Pedestrian, frame: int) -> None:
    bx, by = cam.project(x, z)
    h = 1.9 * cam.scale(z) * cam.exag * cam.people
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


def _draw_rider(draw: ImageDraw.ImageDraw, cam: Camera, x: float, z: float, r: Rider) -> None:
    bx, by = cam.project(x, z)
    h = 1.8 * cam.scale(z) * cam.exag * cam.people
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


def _draw_obstacle(draw: ImageDraw.ImageDraw, cam: Camera, x: float, z: float, o: Obstacle) -> None:
    s = cam.scale(z) * cam.exag
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


def _draw_stop_sign(draw: ImageDraw.ImageDraw, cam: Camera, scene: Scene, z: float) -> None:
    x = scene.boundary_x(scene.num_lanes) + 1.2
    z = max(z, visible_min_z(x + 0.8))
    bx, by = cam.project(x, z)
    s = cam.scale(z)
    r = max(1.1 * s, scene.world.sign_radius * cam.size)
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


def _draw_traffic_light(
    draw: ImageDraw.ImageDraw, cam: Camera, light: TrafficLight, world: WorldScale, approach: float
) -> None:
    """A big overhead signal; ``approach`` < 1 shrinks it towards the vanishing point (earlier frames, farther)."""
    size = cam.size
    vx, vy = size / 2, cam.horizon
    tw, th = world.light_size[0] * size * approach, world.light_size[1] * size * approach
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
    cam = Camera(image_size * _SUPERSAMPLE, scene.world.exag, scene.world.people)
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
            _draw_traffic_light(draw, cam, scene.light, scene.world, 1.0 - 0.03 * (num_frames - 1 - i))
        frames.append(img.reduce(_SUPERSAMPLE))  # box-filter the 2x canvas down: cheap anti-aliasing
    return frames
