"""Procedural dashcam clips labelled by BDD-OIA's rules: the offline stand-in for the real data set.

A clip is a :class:`Scene` (road layout, traffic light, stop sign, vehicles, pedestrians, riders, obstacles)
rendered in a simple perspective view into ``num_frames`` frames taken ``FRAME_INTERVAL_S`` apart, the last
frame being "now", at a world scale (:data:`SCALES`: ``near``, the default, or ``far``). Labels follow from the
scene by :func:`scene_labels` (rules mirroring BDD-OIA's definitions) and every clip gets a short
natural-language description from :func:`describe_scene`. Two labels depend on motion only: a front car drifting
out of the lane (reasons 9 and 12) and a pedestrian stepping off the curb (reason 4) look, in the last frame
alone, exactly like their static counterparts. :func:`generate_synthetic` writes the official BDD-OIA layout so
that :func:`~vlmrl_trl.data.load_bddoia` reads it like the real data.

Modules: ``scene`` (what a clip shows), ``sampling``, ``camera`` (geometry), ``drawing``, ``labels``,
``describe`` and ``generate`` (clips and the files they are written to).
"""

from .describe import describe_scene
from .drawing import render_clip
from .generate import INFO_FILE, SCALE_NOTES, SyntheticClip, generate_synthetic, make_clip
from .labels import scene_labels, stop_causes
from .sampling import sample_scene
from .scene import (
    DEFAULT_SCALE,
    FRAME_INTERVAL_S,
    LANE_WIDTH_M,
    SCALES,
    Obstacle,
    Pedestrian,
    Rider,
    Scene,
    TrafficLight,
    Vehicle,
    WorldScale,
)

__all__ = [
    "DEFAULT_SCALE",
    "FRAME_INTERVAL_S",
    "INFO_FILE",
    "LANE_WIDTH_M",
    "SCALES",
    "SCALE_NOTES",
    "Obstacle",
    "Pedestrian",
    "Rider",
    "Scene",
    "SyntheticClip",
    "TrafficLight",
    "Vehicle",
    "WorldScale",
    "describe_scene",
    "generate_synthetic",
    "make_clip",
    "render_clip",
    "sample_scene",
    "scene_labels",
    "stop_causes",
]
