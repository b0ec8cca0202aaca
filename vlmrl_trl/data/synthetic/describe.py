"""Each clip's short natural-language description: worded at random but always true to its scene."""

from __future__ import annotations

import numpy as np

from .sampling import pick
from .scene import ADJACENT_NEAR_MAX_Z, NEAR_CAR_MAX_Z, Pedestrian, Rider, Scene, TrafficLight, Vehicle

_LANE_POS = {1: ("only",), 2: ("left", "right"), 3: ("left", "middle", "right")}
_NUMBER = {1: "one", 2: "two", 3: "three"}
_MAX_WORDS = 38
_MAX_CLAUSES = 3
_PEDESTRIAN_WORDS = {
    "crossing": ("a pedestrian is crossing in front", "someone walks across the crosswalk ahead"),
    "stepping_in": ("a pedestrian steps off the curb into the road", "a person walks into the road"),
    "waiting": ("a pedestrian waits at the curb", "a person stands by the road"),
    "curb": ("a pedestrian walks on the sidewalk", "a person walks by the road"),
}
_EGO_OBSTACLE = {"cones": "traffic cones block", "barrier": "a barrier blocks", "box": "a box lies in"}
_SIDE_OBSTACLE = {"cones": "traffic cones stand", "barrier": "a barrier stands", "box": "a box lies"}


def _road_phrase(scene: Scene, rng: np.random.Generator) -> str:
    """The road layout and where the car is on it, plus the time of day when it is not plain day."""
    n = scene.num_lanes
    if n == 1:
        road = pick(rng, ("A single-lane road", "Driving on a narrow one-lane road", "A one-lane street"))
    else:
        pos = _LANE_POS[n][scene.ego_lane]
        turn = "left-turn lane" if scene.left_turn_lane else "right-turn lane" if scene.right_turn_lane else None
        lane = turn or f"{pos} lane"
        road = pick(
            rng,
            (
                f"Driving in the {lane} of a {_NUMBER[n]}-lane road",
                f"The car is in the {lane} of a {_NUMBER[n]}-lane street",
                f"A {_NUMBER[n]}-lane road, with the car in the {lane}",
            ),
        )
    if scene.sky == "dusk":
        road += pick(rng, (" at dusk", " in the evening"))
    elif scene.sky == "overcast":
        road += pick(rng, (" under a gray sky", " on a cloudy day"))
    return road


def _light_clause(light: TrafficLight, rng: np.random.Generator) -> str:
    text = pick(
        rng,
        (f"the traffic light is {light.color}", f"a {light.color} light is ahead", f"the signal shows {light.color}"),
    )
    arrows = [side for side, lit in (("left", light.left_arrow), ("right", light.right_arrow)) if lit]
    if arrows:
        text += f" with a green {' and '.join(arrows)} arrow" + ("s" if len(arrows) > 1 else "")
    return text


def _pedestrian_clause(p: Pedestrian, rng: np.random.Generator) -> str | None:
    """What a pedestrian does; people walking along the far sidewalk go unmentioned."""
    if p.role == "sidewalk":
        return None
    kind = "waiting" if p.role == "curb" and p.v_x == 0 and p.v_z == 0 else p.role
    return pick(rng, _PEDESTRIAN_WORDS[kind])


def _lead_clause(lead: Vehicle, rng: np.random.Generator) -> str:
    what = f"{lead.color_name} {lead.kind}"
    if lead.v_lat < -0.5 or lead.v_lat > 0.5:
        side = "left" if lead.v_lat < 0 else "right"
        return pick(rng, (f"the {what} ahead is turning {side}", f"a {what} ahead moves to the {side}"))
    if lead.z <= NEAR_CAR_MAX_Z:
        return pick(rng, (f"a {what} is close ahead", f"a {what} is just in front"))
    if lead.braking:
        return pick(rng, (f"the {what} ahead is braking", f"a {what} ahead has its brake lights on"))
    return pick(rng, (f"a {what} drives ahead", f"the car follows a {what}", f"a {what} is ahead in the lane"))


def _rider_word(r: Rider) -> str:
    return "cyclist" if r.kind == "bicycle" else "motorcyclist"


def _neighbour_clauses(scene: Scene, side: int, rng: np.random.Generator) -> list[str]:
    """Vehicles, riders and obstacles close enough in the lane on ``side`` to block a lane change."""
    name = "left" if side < 0 else "right"
    clauses = []
    near = [v for v in scene.vehicles if v.rel_lane == side and v.z <= ADJACENT_NEAR_MAX_Z]
    if near:
        v = near[0]
        clauses.append(
            pick(rng, (f"a {v.color_name} {v.kind} is in the {name} lane", f"a {v.kind} is beside on the {name}"))
        )
    for r in scene.riders:
        if r.rel_lane == side and r.z <= ADJACENT_NEAR_MAX_Z:
            clauses.append(f"a {_rider_word(r)} rides in the {name} lane")
    for o in scene.obstacles:
        if o.rel_lane == side and o.z <= ADJACENT_NEAR_MAX_Z:
            clauses.append(f"{_SIDE_OBSTACLE[o.kind]} in the {name} lane")
    return clauses


def _clauses(scene: Scene, rng: np.random.Generator) -> list[str]:
    """Everything worth saying, most important first: stop causes, then turning cues, then neighbours."""
    clauses = []
    if scene.light is not None:
        clauses.append(_light_clause(scene.light, rng))
    if scene.stop_sign_z is not None:
        clauses.append(pick(rng, ("a stop sign stands on the right", "there is a stop sign ahead")))
    clauses += [c for c in (_pedestrian_clause(p, rng) for p in scene.pedestrians) if c is not None]
    lead = scene.lead_vehicle()
    if lead is not None:
        clauses.append(_lead_clause(lead, rng))
    for r in scene.riders:
        if r.rel_lane == 0:
            who = _rider_word(r)
            clauses.append(pick(rng, (f"a {who} rides ahead in the lane", f"a {who} is in front")))
    clauses += [f"{_EGO_OBSTACLE[o.kind]} the lane" for o in scene.obstacles if o.rel_lane == 0]
    for side in (-1, 1):
        clauses += _neighbour_clauses(scene, side, rng)
    if not clauses:
        clauses.append(pick(rng, ("the road ahead is clear", "nothing is ahead", "the lane ahead is empty")))
    return clauses


def _joined(clauses: list[str], budget: int) -> str:
    """The first clauses (at most three) that fit in ``budget`` words, joined into one capitalised sentence."""
    kept: list[str] = []
    for clause in clauses:
        if len(kept) < _MAX_CLAUSES and sum(len(c.split()) + 1 for c in (*kept, clause)) <= budget:
            kept.append(clause)
    sentence = kept[0] if len(kept) == 1 else ", ".join(kept[:-1]) + " and " + kept[-1]
    return f"{sentence[0].upper()}{sentence[1:]}"


def _line_phrase(scene: Scene) -> str:
    """The ego lane's boundary lines, e.g. ", a solid line on the left and a dashed line on the right"."""
    lines = []
    for side, idx in (("left", scene.ego_lane), ("right", scene.ego_lane + 1)):
        kind = scene.lines[idx]
        if kind in ("solid", "double_yellow"):
            lines.append(f"a {'double yellow' if kind == 'double_yellow' else 'solid'} line on the {side}")
        elif kind == "dashed":
            lines.append(f"a dashed line on the {side}")
    return f", {' and '.join(lines)}" if lines else ""


def describe_scene(scene: Scene, rng: np.random.Generator) -> str:
    """One or two short sentences about the scene, worded at random but always true to it (< 40 words)."""
    road = _road_phrase(scene, rng)
    text = f"{road}. {_joined(_clauses(scene, rng), _MAX_WORDS - len(road.split()))}"
    lane_text = _line_phrase(scene)
    if lane_text and len(text.split()) + len(lane_text.split()) <= _MAX_WORDS:
        text += lane_text
    return text + "."
