"""Data: BDD-OIA clips, clip manifests, the embedded synthetic clip generator, the loader registry and TRL-ready
formatting."""

from .bddoia import BDDOIADataError, load_bddoia
from .formatting import INSTRUCTION, build_prompt, instruction, sft_target, to_rl_dataset, to_sft_dataset
from .frames import extract_clip_frames, extract_frames
from .loaders import LOADERS, ClipLoader, load_clips, loader_for, register_loader
from .manifest import ManifestDataError, load_manifest
from .synthetic import generate_synthetic, make_clip, render_clip, sample_scene, scene_labels

__all__ = [
    "INSTRUCTION",
    "LOADERS",
    "BDDOIADataError",
    "ClipLoader",
    "ManifestDataError",
    "build_prompt",
    "extract_clip_frames",
    "extract_frames",
    "generate_synthetic",
    "instruction",
    "load_bddoia",
    "load_clips",
    "load_manifest",
    "loader_for",
    "register_loader",
    "make_clip",
    "render_clip",
    "sample_scene",
    "scene_labels",
    "sft_target",
    "to_rl_dataset",
    "to_sft_dataset",
]
