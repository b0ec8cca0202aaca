"""Data: BDD-OIA clips, the embedded synthetic clip generator and TRL-ready formatting."""

from .bddoia import BDDOIADataError, load_bddoia
from .formatting import INSTRUCTION, build_prompt, sft_target, to_rl_dataset, to_sft_dataset
from .frames import extract_clip_frames, extract_frames
from .synthetic import generate_synthetic, make_clip, render_clip, sample_scene, scene_labels

__all__ = [
    "INSTRUCTION",
    "BDDOIADataError",
    "build_prompt",
    "extract_clip_frames",
    "extract_frames",
    "generate_synthetic",
    "load_bddoia",
    "make_clip",
    "render_clip",
    "sample_scene",
    "scene_labels",
    "sft_target",
    "to_rl_dataset",
    "to_sft_dataset",
]
