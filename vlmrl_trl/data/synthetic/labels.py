"""BDD-OIA's label rules applied to a scene: which actions are possible and the reasons why."""

from __future__ import annotations

from ...schema import NUM_ACTIONS, NUM_REASONS
from .scene import ADJACENT_NEAR_MAX_Z, NEAR_CAR_MAX_Z, Scene


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
    blocked = any(v.rel_lane == side and v.z <= ADJACENT_NEAR_MAX_Z for v in scene.vehicles)
    blocked |= any(r.rel_lane == side and r.z <= ADJACENT_NEAR_MAX_Z for r in scene.riders)
    blocked |= any(o.rel_lane == side and o.z <= ADJACENT_NEAR_MAX_Z for o in scene.obstacles)
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
        3 if lead is not None and (lead.z <= NEAR_CAR_MAX_Z or lead.braking) else None,
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
